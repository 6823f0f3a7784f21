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
        self.hedges = Counter(
            "tritonfleet_gateway_hedges",
            "Requests also sent to another node while a late attempt went on (the first answer wins).",
            registry=registry,
        )
        self.overloaded = Counter(
            "tritonfleet_gateway_overloaded",
            "Requests refused at once (503, UNAVAILABLE) because the gateway or every node was at its limit.",
            registry=registry,
        )
        self.ejections = Counter(
            "tritonfleet_gateway_ejections", "Nodes ejected after failures.", ["node"], registry=registry
        )
        self.stale_view = Gauge(
            "tritonfleet_gateway_node_view_stale",
            "1 while no health checker vouches for the node view: routing on the last known nodes.",
            registry=registry,
        )
        self.in_flight = Gauge(
            "tritonfleet_gateway_in_flight", "Requests being served now.", registry=registry
        )
