"""The settler's rounds: when one is due, and what a failed one costs. A failure (the chain
unreachable, rate-limited or lagging, the database down, a batch refused, a bug) is logged and
counted, and the next round waits a back-off that doubles while rounds keep failing; it never
stops the settler, and it loses nothing: the charges and batches stay in the ledger as recorded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from tritonfleet.config import Settlement, SettlerConfig
from tritonfleet.node.backoff import Backoff
from tritonfleet.payments.chain.client import ChainError
from tritonfleet.payments.errors import LedgerError
from tritonfleet.settler.metrics import SettlerMetrics
from tritonfleet.settler.service import BatchRefused, Settler

log = logging.getLogger(__name__)

# How often the settler looks whether enough charges wait to settle before the interval ends.
CHECK_S = 1.0


class Rounds:
    """Runs the settler's rounds until stopped.

    A round is due every `interval_s`, sooner once `max_charges` wait, and on every check in
    per-request mode. `clock` gives seconds (Unix time: the ledger's charges are dated so).
    """

    def __init__(
        self,
        settler: Settler,
        settings: SettlerConfig,
        metrics: SettlerMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settler = settler
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.backoff = Backoff(settings.retry_base_s, settings.retry_max_s)
        # Rounds failed in a row: the next waits longer.
        self.failures = 0
        self._last_round_s: float | None = None

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            stop.wait(self.tick())

    def tick(self) -> float:
        """Run a round if one is due, then show the ledger's figures; the seconds to wait
        before the next tick."""
        wait_s = CHECK_S
        try:
            if self._due():
                self.metrics.rounds.inc()
                self.settler.settle_pending()
                self._last_round_s = self.clock()
            self.failures = 0
        except Exception as exc:
            self.failures += 1
            wait_s = self.backoff.delay_s(self.failures)
            self._failed(exc, wait_s)
        # After a failed round too: a settler in trouble is when its figures are looked at.
        self._show()
        return wait_s

    def _show(self) -> None:
        try:
            self.metrics.show(self.settler.ledger.settlement_figures(), self.clock())
        except Exception as exc:
            # The round says why the ledger fails, if it does; the gauges keep their last figures.
            log.warning("cannot read the settler's figures", extra={"error": str(exc)})

    def _due(self) -> bool:
        if self._last_round_s is None or self.settings.settlement is Settlement.PER_REQUEST:
            return True
        if self.clock() - self._last_round_s >= self.settings.interval_s:
            return True
        return self.settler.ledger.committed_count() >= self.settings.max_charges

    def _failed(self, exc: Exception, retry_in_s: float) -> None:
        cause = _cause(exc)
        self.metrics.failures.labels(cause).inc()
        extra = {"cause": cause, "error": str(exc), "retry_in_s": retry_in_s, "failures": self.failures}
        if cause == "unexpected":
            log.error("settlement round failed", exc_info=exc, extra=extra)
        elif cause == "refused":
            log.error("settlement refused", extra=extra)
        else:
            log.warning("settlement waits: the %s is unavailable", cause, extra=extra)


def _cause(exc: Exception) -> str:
    if isinstance(exc, BatchRefused):
        return "refused"
    if isinstance(exc, ChainError):
        return "chain"
    if isinstance(exc, SQLAlchemyError | LedgerError):
        return "ledger"
    return "unexpected"
