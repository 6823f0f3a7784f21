"""Scheduling policies: pure functions of candidate node ids and their loads.

A policy never sees the node list, health or models: the scheduler core filters candidates
first, so that every policy is model-aware by construction and testable with plain strings.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Sequence

from tritonfleet.config import Policy

# Outstanding requests on a node, as the caller counts them.
LoadFn = Callable[[str], int]


class SchedulingPolicy(ABC):
    @abstractmethod
    def choose(self, key: str, candidates: Sequence[str], load: LoadFn) -> str:
        """One of `candidates` (never empty) for a request of `key`, the model and version."""


class RoundRobin(SchedulingPolicy):
    """Each key (model) rotates through the nodes serving it, in node-id order.

    The rotation remembers the last node chosen for each key rather than an index, and goes on
    with the first candidate after it. When the candidates change (a node joins or leaves, or
    one is excluded for a retry) the rotation carries on from where it was instead of jumping,
    so every node serving a model stays within one request of its fair share. Keys are
    independent: a burst of requests for one model does not shift another model's rotation.
    """

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def choose(self, key: str, candidates: Sequence[str], load: LoadFn) -> str:
        ordered = sorted(candidates)
        last = self._last.get(key)
        index = 0 if last is None else bisect_right(ordered, last) % len(ordered)
        self._last[key] = ordered[index]
        return ordered[index]


class LeastOutstanding(SchedulingPolicy):
    """The node with the fewest outstanding requests; ties rotate round-robin per key.

    Rotating among the tied matters most when the cluster is idle (all loads 0): without it
    every request would land on the same node, which is the opposite of spreading load.
    """

    def __init__(self) -> None:
        self._ties = RoundRobin()

    def choose(self, key: str, candidates: Sequence[str], load: LoadFn) -> str:
        loads = {node: load(node) for node in candidates}
        least = min(loads.values())
        tied = [node for node, outstanding in loads.items() if outstanding == least]
        return tied[0] if len(tied) == 1 else self._ties.choose(key, tied, load)


class PowerOfTwoChoices(SchedulingPolicy):
    """Two distinct candidates at random; the one with fewer outstanding requests wins.

    Loads are never exact here: a node's queue depth comes with its heartbeat, a second late,
    and other gateways send to the same nodes. Least-outstanding trusts that view completely,
    so every decision made on one stale view goes to the same apparently idlest node
    (herding). Two random choices keep most of the gain over random placement (the busiest
    node's excess falls from about log n / log log n to log log n, Mitzenmacher 2001) while
    concurrent decisions spread over different pairs. Each pick costs two load look-ups, and a
    node busier than every other candidate is never chosen.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def choose(self, key: str, candidates: Sequence[str], load: LoadFn) -> str:
        if len(candidates) == 1:
            return candidates[0]
        first, second = self.rng.sample(candidates, 2)
        # On a tie `first` wins, which is already a fair coin: sample() ordered them at random.
        return second if load(second) < load(first) else first


def make_policy(policy: Policy, rng: random.Random | None = None) -> SchedulingPolicy:
    if policy is Policy.ROUND_ROBIN:
        return RoundRobin()
    if policy is Policy.LEAST_OUTSTANDING:
        return LeastOutstanding()
    return PowerOfTwoChoices(rng)
