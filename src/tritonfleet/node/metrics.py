"""The manager's Prometheus metrics, in a registry of its own (one per process or per test)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge

from tritonfleet.metrics import HttpMetrics
from tritonfleet.protocol import NodeState


class NodeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        # Requests relayed to Triton in forwarding mode, by kind (`infer` or `other`) and status.
        self.forwarded = HttpMetrics(self.registry, "tritonfleet_node_forwarded")
        self.in_flight = Gauge(
            "tritonfleet_node_in_flight", "Requests being forwarded to Triton now.", registry=self.registry
        )
        self.triton_restarts = Counter(
            "tritonfleet_node_triton_restarts",
            "Times tritonserver exited and was restarted.",
            registry=self.registry,
        )
        self.heartbeat_failures = Counter(
            "tritonfleet_node_heartbeat_failures",
            "Registrations and heartbeats that a health checker did not accept.",
            ["health_url"],
            registry=self.registry,
        )
        self.ready_models = Gauge(
            "tritonfleet_node_ready_models",
            "Model versions that Triton reports READY.",
            registry=self.registry,
        )
        self.state = Enum(
            "tritonfleet_node_state",
            "The node's state as announced in heartbeats.",
            states=[state.value for state in NodeState],
            registry=self.registry,
        )
