"""`tritonfleet settler`: settles committed charges every `settle_interval_s`, or sooner once
`settle_max_charges` are waiting, until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

from tritonfleet.config import FleetConfig, Settlement
from tritonfleet.payments.chain import connect
from tritonfleet.payments.database import default_ledger_url
from tritonfleet.payments.ledger import Ledger
from tritonfleet.payments.settler import Settler

log = logging.getLogger(__name__)

# How often the settler looks whether enough charges wait to settle before the interval ends.
CHECK_S = 1.0


def serve(config: FleetConfig) -> int:
    payments = config.payments
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    per_request = payments.settlement is Settlement.PER_REQUEST
    with Ledger.open(default_ledger_url(config)) as ledger:
        settler = Settler(
            ledger, connect(config), max_charges=1 if per_request else payments.settle_max_charges
        )
        log.info(
            "settler running",
            extra={"settlement": payments.settlement, "interval_s": payments.settle_interval_s},
        )
        last_s = 0.0
        while not stop.is_set():
            due = time.monotonic() - last_s >= payments.settle_interval_s
            if due or per_request or ledger.committed_count() >= payments.settle_max_charges:
                settler.settle_pending()
                last_s = time.monotonic()
            stop.wait(CHECK_S)
    log.info("settler stopped")
    return 0
