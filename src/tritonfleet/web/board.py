"""What the cluster page shows: every node seen, its state and its recent figures.

Pure state, moved by what the monitor observes (listings, probes, counters) and read as a
snapshot; nodes that the health checker dropped stay on the board, red, until they return.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tritonfleet.protocol import NodeHealth, NodeState, NodeView
from tritonfleet.web.counters import Counters, rates

# Points kept per time series: two minutes at one point a second.
HISTORY_POINTS = 120
# Probes that time out in a row before a node counts as down; a refused connection counts at once.
SLOW_PROBES_DOWN = 2
# A node gone from the health checker this long leaves the board.
FORGET_AFTER_S = 600.0


class BoardStatus(StrEnum):
    UP = "up"
    STARTING = "starting"
    DRAINING = "draining"
    UNHEALTHY = "unhealthy"
    DOWN = "down"


class Probe(StrEnum):
    OK = "ok"
    # Connection refused or reset: nothing listens there any more.
    REFUSED = "refused"
    # Timed out or answered an error: maybe busy, maybe dying.
    FAILED = "failed"


def status_of(view: NodeView, listed: bool, reachable: bool) -> BoardStatus:
    if not listed or not reachable:
        return BoardStatus.DOWN
    if view.health is NodeHealth.UNHEALTHY:
        return BoardStatus.UNHEALTHY
    if view.state is NodeState.STARTING:
        return BoardStatus.STARTING
    if view.state is NodeState.DRAINING:
        return BoardStatus.DRAINING
    return BoardStatus.UP


@dataclass
class Series:
    points: deque[tuple[float, float | None]] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))

    def add(self, at_s: float, value: float | None) -> None:
        self.points.append((at_s, value))

    def last(self) -> float | None:
        """The newest value that is not a gap."""
        return next((value for _, value in reversed(self.points) if value is not None), None)


@dataclass
class BoardRow:
    view: NodeView
    listed: bool = True
    unlisted_since_s: float | None = None
    slow_probes: int = 0
    refused: bool = False
    counters: tuple[float, Counters] | None = None
    rps: Series = field(default_factory=Series)
    latency_ms: Series = field(default_factory=Series)
    in_flight: Series = field(default_factory=Series)

    @property
    def reachable(self) -> bool:
        return not self.refused and self.slow_probes < SLOW_PROBES_DOWN

    @property
    def status(self) -> BoardStatus:
        return status_of(self.view, self.listed, self.reachable)


class Board:
    def __init__(self) -> None:
        self.nodes: dict[str, BoardRow] = {}
        self.health_checker_up: bool | None = None
        self.gateway_up: bool | None = None

    def listing(self, views: list[NodeView] | None, now_s: float) -> None:
        """The health checker's node list; None when no health checker answered."""
        self.health_checker_up = views is not None
        if views is None:
            return
        seen = {view.node_id: view for view in views}
        for node_id, view in seen.items():
            record = self.nodes.get(node_id)
            if record is None or _restarted(record.view, view):
                self.nodes[node_id] = BoardRow(view)
            else:
                record.view, record.listed, record.unlisted_since_s = view, True, None
        for node_id, record in list(self.nodes.items()):
            if node_id in seen:
                continue
            record.listed = False
            if record.unlisted_since_s is None:
                record.unlisted_since_s = now_s
            elif now_s - record.unlisted_since_s > FORGET_AFTER_S:
                del self.nodes[node_id]

    def probe(self, node_id: str, result: Probe) -> None:
        record = self.nodes.get(node_id)
        if record is None:
            return
        record.refused = result is Probe.REFUSED
        record.slow_probes = 0 if result is Probe.OK else record.slow_probes + 1

    def sample(self, node_id: str, at_s: float, counters: Counters | None) -> None:
        """One point of each series; counters None when the node's metrics did not answer."""
        record = self.nodes.get(node_id)
        if record is None:
            return
        record.in_flight.add(at_s, float(record.view.in_flight + record.view.pending))
        previous, record.counters = record.counters, (at_s, counters) if counters is not None else None
        measured = rates(previous[1], counters, at_s - previous[0]) if previous and counters else None
        record.rps.add(at_s, measured.rps if measured else (0.0 if counters is not None else None))
        record.latency_ms.add(at_s, measured.latency_ms if measured else None)

    def snapshot(self, now_s: float) -> dict[str, Any]:
        return {
            "health_checker_up": self.health_checker_up,
            "gateway_up": self.gateway_up,
            "nodes": [_node_json(self.nodes[node_id], now_s) for node_id in sorted(self.nodes)],
        }


def _restarted(old: NodeView, new: NodeView) -> bool:
    # A new Triton (new ports) starts its counters and series afresh.
    return old.triton_http_url != new.triton_http_url or old.manager_url != new.manager_url


def _node_json(record: BoardRow, now_s: float) -> dict[str, Any]:
    """What a visitor of the cluster view may see: never a node's address (README, Security)."""
    view = record.view
    return {
        "node_id": view.node_id,
        "status": record.status.value,
        "state": view.state.value,
        "health": view.health.value,
        "listed": record.listed,
        "reachable": record.reachable,
        "models": [f"{m.name}:{m.version}" for m in view.models],
        "in_flight": view.in_flight + view.pending,
        "rps": record.rps.last(),
        "latency_ms": record.latency_ms.last(),
        "series": {
            "rps": _points(record.rps, now_s),
            "latency_ms": _points(record.latency_ms, now_s),
            "in_flight": _points(record.in_flight, now_s),
        },
    }


def _points(series: Series, now_s: float) -> list[list[float | None]]:
    """[seconds before now, value] pairs, oldest first; a None value is a gap in the chart."""
    return [[round(at_s - now_s, 2), value] for at_s, value in series.points]
