"""The scheduler service's Prometheus metrics, in a registry of its own per app."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from tritonfleet.metrics import HttpMetrics
from tritonfleet.protocol import NodeView


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.http = HttpMetrics(self.registry, "tritonfleet_scheduler_http")
        self.schedules = Counter(
            "tritonfleet_scheduler_schedules",
            "Schedule requests, by outcome (ok, unknown_model, no_node, bad_request).",
            ["outcome"],
            registry=self.registry,
        )
        self.choices = Counter(
            "tritonfleet_scheduler_choices", "Nodes chosen.", ["node_id"], registry=self.registry
        )
        self.nodes = Gauge(
            "tritonfleet_scheduler_nodes",
            "Nodes in the scheduler's view, by whether they can take requests now.",
            ["schedulable"],
            registry=self.registry,
        )

    def chosen(self, node_id: str) -> None:
        self.schedules.labels("ok").inc()
        self.choices.labels(node_id).inc()

    def refused(self, outcome: str) -> None:
        self.schedules.labels(outcome).inc()

    def view(self, nodes: Sequence[NodeView]) -> None:
        schedulable = sum(node.schedulable for node in nodes)
        self.nodes.labels("true").set(schedulable)
        self.nodes.labels("false").set(len(nodes) - schedulable)
