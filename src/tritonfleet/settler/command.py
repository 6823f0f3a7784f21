"""`tritonfleet settler` and `tritonfleet reconcile`: the settler's two commands.

`serve` settles committed charges every `settler.interval_s`, or sooner once
`settler.max_charges` are waiting, until SIGINT/SIGTERM; a failed round is logged, counted and
retried after a back-off (`rounds.py`), and its metrics are on `settler.metrics_port`.
`reconcile` lists every mismatch between the ledger's settlements and the vault's events, and
the batches failed for good; exit status 1 when there is any, so that it can run from cron or
CI. It also lists the debts that short deposits left, which are no mismatch.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from tritonfleet.config import FleetConfig, Settlement
from tritonfleet.payments.chain.client import ChainError, connect, connect_settler
from tritonfleet.payments.ledger.database import default_ledger_url
from tritonfleet.payments.ledger.states import BatchState
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.settler.metrics import SettlerMetrics
from tritonfleet.settler.reconcile import compare, open_debts
from tritonfleet.settler.rounds import Rounds
from tritonfleet.settler.service import Settler

log = logging.getLogger(__name__)

# Far more batches than one ledger holds; reconcile reads them all.
ALL_BATCHES = 10**9
WEI_PER_GWEI = 10**9


def serve(config: FleetConfig) -> int:
    settings = config.settler
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    per_request = settings.settlement is Settlement.PER_REQUEST
    metrics = SettlerMetrics()
    server = metrics.serve(settings.metrics_host, settings.metrics_port)
    try:
        with Ledger.open(default_ledger_url(config)) as ledger:
            settler = Settler(
                ledger,
                # The settler's own key: it may settle, and nothing else.
                connect_settler(config),
                max_charges=1 if per_request else settings.max_charges,
                max_attempts=settings.max_attempts,
                max_fee_per_gas=round(settings.max_fee_gwei * WEI_PER_GWEI),
            )
            log.info(
                "settler running",
                extra={"settlement": settings.settlement, "interval_s": settings.interval_s},
            )
            Rounds(settler, settings, metrics).run(stop)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    log.info("settler stopped")
    return 0


def reconcile(config: FleetConfig) -> int:
    with Ledger.open(default_ledger_url(config)) as ledger:
        batches = ledger.settlements(limit=ALL_BATCHES)
        totals = ledger.totals_by_account()
    chain = connect(config, signing=False)
    try:
        problems = compare(batches, chain.settled_events(), chain.charged_events(), chain.shortfall_events())
    except ChainError as exc:
        print(f"tritonfleet reconcile: cannot read the chain: {exc}", file=sys.stderr)
        return 2
    for line in problems:
        print(line)
    debts = open_debts(totals)
    for line in debts:
        print(line)
    confirmed = [batch for batch in batches if batch.state is BatchState.CONFIRMED]
    total = sum(batch.amount for batch in confirmed)
    verdict = "MISMATCH" if problems else "ledger and chain agree"
    print(
        f"{verdict}: {len(confirmed)} settled batches, {total} credit settled, "
        f"{len(debts)} accounts in debt, {len(problems)} problems"
    )
    return 1 if problems else 0
