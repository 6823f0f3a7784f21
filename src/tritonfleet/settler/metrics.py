"""The settler's Prometheus metrics, in a registry of its own, served on `settler.metrics_port`."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.exposition import WSGIServer

from tritonfleet.payments.ledger.records import SettlementFigures
from tritonfleet.payments.ledger.states import BatchState

log = logging.getLogger(__name__)

PREFIX = "tritonfleet_settler"


class SettlerMetrics:
    """Rounds and their failures, counted as they happen; the ledger's figures, as of the last
    round (`show`)."""

    def __init__(self) -> None:
        # Per settler, not prometheus_client's global registry, so tests can build many.
        self.collectors = CollectorRegistry()
        self.rounds = Counter(f"{PREFIX}_rounds", "Settlement rounds run.", registry=self.collectors)
        self.failures = Counter(
            f"{PREFIX}_failures",
            "Rounds that failed, by cause: chain (unreachable, rate-limited, lagging), ledger "
            "(the database), refused (the chain refused a batch), unexpected (a bug).",
            ["cause"],
            registry=self.collectors,
        )
        self.batches = Gauge(
            f"{PREFIX}_batches",
            "Settlement batches in the ledger, by state.",
            ["state"],
            registry=self.collectors,
        )
        self.oldest_unsettled_age = Gauge(
            f"{PREFIX}_oldest_unsettled_charge_age_seconds",
            "Age of the oldest charge still to settle (committed, or in a batch being sent); 0 when none.",
            registry=self.collectors,
        )
        self.set_aside = Gauge(
            f"{PREFIX}_set_aside_charges",
            "Charges of batches failed for good: unsettled until an operator acts (see reconcile).",
            registry=self.collectors,
        )

    def show(self, figures: SettlementFigures, now_s: float) -> None:
        for state in BatchState:
            self.batches.labels(state.value).set(figures.batches.get(state, 0))
        oldest = figures.oldest_waiting_at_s
        self.oldest_unsettled_age.set(0.0 if oldest is None else max(0.0, now_s - oldest))
        self.set_aside.set(figures.set_aside_charges)

    def serve(self, host: str, port: int) -> WSGIServer | None:
        """Serve /metrics on a thread of its own; None when port is 0, or taken: settling
        matters more than its metrics, so the settler goes on without them, and says so."""
        if port == 0:
            return None
        try:
            server, _ = start_http_server(port, host, registry=self.collectors)
        except OSError as exc:
            log.error(
                "cannot serve the settler's metrics", extra={"host": host, "port": port, "error": str(exc)}
            )
            return None
        return server
