"""What recent answers say about grey failures: how long one attempt may take, and which node
is slow against its peers. The Python plane's routing (routing.py) feeds both with every answer.

    AttemptTimeouts   per model: attempt_timeout_factor x the p99 of its recent answers,
                      within [floor, ceiling]; past it, the attempt is late (hedge, eject)
    LatencyOutliers   per model and node: the median of its last answers' latency; a node
                      outlier_latency_factor times slower than its peers' median is slow
"""

from __future__ import annotations

import statistics
from collections import deque

from tritonfleet.config import GatewayConfig

# Answers kept per model for its p99, and how many it takes before they are trusted over the
# ceiling. The p99 is recomputed every REFRESH answers: sorting 256 floats costs microseconds,
# which every request need not pay.
WINDOW = 256
MIN_ANSWERS = 20
REFRESH = 16


class _Recent:
    __slots__ = ("answers", "since_refresh", "timeout_s")

    def __init__(self, ceiling_s: float) -> None:
        self.answers: deque[float] = deque(maxlen=WINDOW)
        self.since_refresh = 0
        self.timeout_s = ceiling_s


class AttemptTimeouts:
    """How long one attempt on a node may take before another node is asked (and the first
    counts a failure): the model's recent p99 times a factor, so that a model answering in
    milliseconds has a hung node found in a fraction of a second, and one answering in seconds
    (a diffusion model) is not hedged for its normal pace."""

    def __init__(self, factor: float, floor_s: float, ceiling_s: float) -> None:
        self.factor = factor
        self.floor_s = floor_s
        self.ceiling_s = ceiling_s
        self._models: dict[str, _Recent] = {}

    @classmethod
    def of(cls, gw: GatewayConfig) -> AttemptTimeouts:
        return cls(gw.attempt_timeout_factor, gw.attempt_timeout_floor_s, gw.attempt_timeout_ceiling_s)

    def timeout_s(self, model: str) -> float:
        recent = self._models.get(model)
        return self.ceiling_s if recent is None else recent.timeout_s

    def observe(self, model: str, seconds: float) -> None:
        recent = self._models.get(model)
        if recent is None:
            recent = self._models[model] = _Recent(self.ceiling_s)
        recent.answers.append(seconds)
        recent.since_refresh += 1
        if recent.since_refresh >= REFRESH and len(recent.answers) >= MIN_ANSWERS:
            recent.since_refresh = 0
            ordered = sorted(recent.answers)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            recent.timeout_s = min(self.ceiling_s, max(self.floor_s, self.factor * p99))


# A node is judged on the median of its last NODE_WINDOW answers, once it has MIN_NODE_ANSWERS
# of them since it was last judged slow: one stall of a busy machine moves no median, a node
# slow on most of its answers does. A slowness under ABSOLUTE_MARGIN_S is noise, however large
# the ratio (0.3 ms against 0.1 ms is no slow node).
NODE_WINDOW = 7
MIN_NODE_ANSWERS = 5
ABSOLUTE_MARGIN_S = 0.005


class _Answers:
    __slots__ = ("median_s", "recent")

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=NODE_WINDOW)
        self.median_s = 0.0

    def add(self, seconds: float) -> None:
        self.recent.append(seconds)
        self.median_s = statistics.median(self.recent)


class LatencyOutliers:
    """Finds the node that answers a model far slower than the other nodes do (a throttled GPU,
    a lossy link): it still answers, so no failure would ever eject it, yet every request it
    takes waits. Peers that answer the same model are the yardstick, not a fixed figure."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self._nodes: dict[str, dict[str, _Answers]] = {}

    def observe(self, model: str, node_id: str, seconds: float) -> bool | None:
        """Record one answer: True when `node_id` is now an outlier for `model` (its answers
        then start over, so that after its back-off it is judged on its new ones only); False
        when it is not, or has no peer to be judged against; None while it has too few answers
        since it started over to be judged either way."""
        nodes = self._nodes.setdefault(model, {})
        answers = nodes.get(node_id)
        if answers is None:
            answers = nodes[node_id] = _Answers()
        answers.add(seconds)
        if self.factor <= 0:
            return False
        if len(answers.recent) < MIN_NODE_ANSWERS:
            return None
        peers = [
            peer.median_s
            for peer_id, peer in nodes.items()
            if peer_id != node_id and len(peer.recent) >= MIN_NODE_ANSWERS
        ]
        if not peers:
            return False
        yardstick = statistics.median(peers)
        if answers.median_s > self.factor * yardstick and answers.median_s - yardstick > ABSOLUTE_MARGIN_S:
            del nodes[node_id]
            return True
        return False

    def forget(self, node_ids: set[str]) -> None:
        """Drop the nodes that left the cluster's view."""
        for nodes in self._nodes.values():
            for node_id in [node_id for node_id in nodes if node_id not in node_ids]:
                del nodes[node_id]
