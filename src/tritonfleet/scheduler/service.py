"""The scheduler as a service, for gateways that do not embed it.

It keeps its node list from the health checkers' watch (never one request to a checker per
schedule) and, having no in-flight feedback from gateways, counts load as each node's reported
in-flight and queue depth plus its own choices of the last heartbeat interval (RecentChoices).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence

import httpx

from tritonfleet.config import FleetConfig, NodeRoute
from tritonfleet.health.watch import NodeWatcher
from tritonfleet.protocol import NodeView, ScheduleResponse
from tritonfleet.scheduler.core import Scheduler, node_url
from tritonfleet.scheduler.errors import SchedulerError
from tritonfleet.scheduler.metrics import SchedulerMetrics
from tritonfleet.scheduler.recent import RecentChoices


class ScheduleService:
    """One app's scheduler, its metrics, and the version of its view."""

    def __init__(self, config: FleetConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.scheduler = Scheduler(config.scheduler.policy, count_reported_in_flight=True)
        self.recent = RecentChoices(self.scheduler, config.health.heartbeat_interval_s, clock)
        self.metrics = SchedulerMetrics()
        self.version = 0

    def update(self, nodes: Sequence[NodeView]) -> None:
        self.scheduler.update(nodes)
        self.version += 1
        self.metrics.view(nodes)

    def schedule(
        self,
        model: str,
        version: str | None,
        exclude: Collection[str],
        route: NodeRoute,
        affinity: str | None = None,
        pinned: str | None = None,
    ) -> ScheduleResponse:
        self.recent.expire()
        try:
            node = self.scheduler.choose(model, version, exclude, affinity, pinned)
        except SchedulerError as exc:
            self.metrics.refused("unknown_model" if exc.status == 404 else "no_node")
            raise
        self.recent.add(node.node_id)
        self.metrics.chosen(node.node_id)
        return ScheduleResponse(node_id=node.node_id, url=node_url(node, route))

    def watcher(self, client: httpx.AsyncClient) -> NodeWatcher:
        health = self.config.health
        return NodeWatcher(
            self.config.cluster.health_urls,
            client,
            on_change=self.update,
            watch_timeout_s=health.watch_timeout_s,
            token=self.config.cluster.read_token(),
            stale_after_s=health.ttl_s,
        )
