"""The health checker's Prometheus metrics, in a registry of its own per app."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tritonfleet.health.registry import Registry
from tritonfleet.metrics import HttpMetrics, render

PREFIX = "tritonfleet_health"


class HealthMetrics:
    """HTTP metrics plus the registry's size and version, rejected writes and probe failures.

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
            f"{PREFIX}_rejected_writes",
            "Writes refused with 401 for a missing or wrong cluster token.",
            ["route"],
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


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (not raw path) and status."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_s = time.perf_counter()
        status = 500  # what the client sees if the app dies before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(_route(scope), status, time.perf_counter() - started_s)


def _route(scope: Scope) -> str:
    # The router writes the matched route into the scope; unmatched paths share one label so
    # that scanners cannot blow up the label cardinality.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
