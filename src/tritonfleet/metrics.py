"""Prometheus metrics shared by every service; each service adds its own beside these."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

# Latency buckets from half a millisecond (the gateway's own overhead) to a minute (a long image
# generation).
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class HttpMetrics:
    """Requests, errors and latency of one service's HTTP endpoints."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.requests = Counter(
            f"{prefix}_requests", "HTTP requests served.", ["route", "code"], registry=registry
        )
        self.latency = Histogram(
            f"{prefix}_request_duration_seconds",
            "Time to serve an HTTP request.",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )

    def observe(self, route: str, code: int, duration_s: float) -> None:
        self.requests.labels(route, str(code)).inc()
        self.latency.labels(route).observe(duration_s)


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The exposition body and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
