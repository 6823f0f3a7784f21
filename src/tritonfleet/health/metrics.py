"""The health checker's Prometheus metrics, in a registry of its own per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from tritonfleet.health.registry import Registry
from tritonfleet.metrics import HttpMetrics, render

PREFIX = "tritonfleet_health"


class HealthMetrics:
    """HTTP metrics plus the registry's size and version, refused requests and probe failures.

    The gauges are read from the registry at scrape time rather than kept up to date on every
    change, so they can never drift from it.
    """

    def __init__(self) -> None:
        # Per app, not prometheus_client's global registry, so tests can build many apps.
        self.collectors = CollectorRegistry()
        self.http = HttpMetrics(self.collectors, PREFIX)
        self.nodes = Gauge(f"{PREFIX}_nodes", "Registered nodes.", ["health"], registry=self.collectors)
        self.version = Gauge(f"{PREFIX}_registry_version", "Registry version.", registry=self.collectors)
        self.rejected = Counter(
            f"{PREFIX}_rejected_requests",
            "Requests refused for a missing or wrong credential: the cluster token (401), "
            "a node's secret (403) or a live node's id taken without it (409).",
            ["route", "reason"],
            registry=self.collectors,
        )
        self.probe_failures = Counter(
            f"{PREFIX}_probe_failures", "Node probes that failed.", registry=self.collectors
        )

    def render(self, registry: Registry) -> tuple[bytes, str]:
        for health, count in registry.counts().items():
            self.nodes.labels(health.value).set(count)
        self.version.set(registry.version)
        return render(self.collectors)
