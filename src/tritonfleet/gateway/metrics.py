"""The gateway's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tritonfleet.metrics import LATENCY_BUCKETS_S, HttpMetrics


class GatewayMetrics(HttpMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry, "tritonfleet_gateway")
        self.upstream = Counter(
            "tritonfleet_gateway_upstream_requests",
            "Requests sent to nodes, by node and outcome (HTTP status, unavailable, timeout).",
            ["node", "outcome"],
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "tritonfleet_gateway_upstream_duration_seconds",
            "Time a node took to answer.",
            ["node"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.retries = Counter(
            "tritonfleet_gateway_retries", "Requests sent again to another node.", registry=registry
        )
        self.ejections = Counter(
            "tritonfleet_gateway_ejections", "Nodes ejected after failures.", ["node"], registry=registry
        )
        self.in_flight = Gauge(
            "tritonfleet_gateway_in_flight", "Requests being served now.", registry=registry
        )
