"""The scheduler proper: a view of the nodes, in-flight counts, and a policy. No I/O."""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from tritonfleet.config import NodeRoute, Policy
from tritonfleet.protocol import NodeView
from tritonfleet.scheduler.errors import NoNodeAvailable, SchedulerError, UnknownModel
from tritonfleet.scheduler.policies import make_policy
from tritonfleet.scheduler.rendezvous import rendezvous

__all__ = ["NoNodeAvailable", "Scheduler", "SchedulerError", "UnknownModel", "node_url"]


class Scheduler:
    """Chooses, per request, a node that serves the model, among those that can take it now.

    A node is a candidate when it reports the model (and version, if one is asked for), is
    healthy and ready, and is not excluded by the caller (a node that just failed the same
    request). A model that no node reports at all, in any health or state, is unknown (404);
    a known model without a candidate is only unavailable for now (503), as while its nodes
    start, drain or recover.

    Load is what the policy compares: the caller's own in-flight requests on the node (exact:
    `acquire` when a request is sent, `release` when it ends) plus the queue depth the node
    reported in its last heartbeat (lagging, but it includes the requests of other gateways).
    With `count_reported_in_flight`, the node's reported in-flight count is added too: for a
    caller that cannot count its own requests, such as the scheduler service.
    """

    def __init__(
        self,
        policy: Policy,
        rng: random.Random | None = None,
        *,
        count_reported_in_flight: bool = False,
    ) -> None:
        self._policy = make_policy(policy, rng)
        self._count_reported_in_flight = count_reported_in_flight
        self._nodes: dict[str, NodeView] = {}
        self._in_flight: dict[str, int] = {}

    def update(self, nodes: Sequence[NodeView]) -> None:
        # In-flight counts survive updates: requests sent to a node that left still end later.
        self._nodes = {node.node_id: node for node in nodes}

    @property
    def nodes(self) -> list[NodeView]:
        return list(self._nodes.values())

    def choose(
        self,
        model: str,
        version: str | None = None,
        exclude: Collection[str] = (),
        affinity: str | None = None,
        pinned: str | None = None,
    ) -> NodeView:
        """With `affinity` (a sequence's key, rendezvous.sequence_key), the key's node by
        rendezvous hashing over the candidates instead of the policy's choice, or `pinned` if it
        is a candidate (the node a live sequence was started on)."""
        serving = [node for node in self._nodes.values() if node.serves(model, version)]
        if not serving:
            raise UnknownModel.of(model, version)
        excluded = frozenset(exclude)
        candidates = [node.node_id for node in serving if node.schedulable and node.node_id not in excluded]
        if not candidates:
            raise NoNodeAvailable.of(model, version)
        if affinity is not None:
            return self._nodes[pinned if pinned in candidates else rendezvous(affinity, candidates)]
        # Keyed by model name alone: asking with or without a version is the same rotation.
        return self._nodes[self._policy.choose(model, candidates, self.outstanding)]

    def acquire(self, node_id: str) -> None:
        self._in_flight[node_id] = self._in_flight.get(node_id, 0) + 1

    def release(self, node_id: str) -> None:
        left = self._in_flight.get(node_id, 0) - 1
        if left > 0:
            self._in_flight[node_id] = left
        else:
            # Dropping zeros keeps the map as small as the set of busy nodes.
            self._in_flight.pop(node_id, None)

    def in_flight(self, node_id: str) -> int:
        """The caller's own requests on the node, as counted by acquire and release."""
        return self._in_flight.get(node_id, 0)

    def outstanding(self, node_id: str) -> int:
        node = self._nodes.get(node_id)
        reported = 0
        if node is not None:
            reported = node.pending + (node.in_flight if self._count_reported_in_flight else 0)
        return self.in_flight(node_id) + reported


def node_url(node: NodeView, route: NodeRoute) -> str:
    """Where a request for this node goes: Triton itself, or its manager (forwarding mode)."""
    return node.manager_url if route == NodeRoute.MANAGER else node.triton_http_url
