"""Routing one request: which node to try, the attempts one node after another, ejection.

`NodeRouting.attempt` is the one attempt loop of the gateway; the HTTP and gRPC forwarders only
say how to send to one node (`http/forwarding.py`, `grpc/forwarding.py`). A node that fails is
ejected by the `Ejector` (passive health checking), long before the health checker's TTL runs out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from tritonfleet.gateway.errors import DeadlineExceeded, GatewayError, Unavailable
from tritonfleet.gateway.metrics import GatewayMetrics
from tritonfleet.gateway.sequences import LiveSequences, SequenceRequest, StatefulModels
from tritonfleet.scheduler.client import Pick, SchedulerClient
from tritonfleet.scheduler.errors import NoNodeAvailable

log = logging.getLogger(__name__)

_Answer = TypeVar("_Answer")


@dataclass(slots=True)
class _Record:
    failures: int = 0
    ejections: int = 0
    until: float = 0.0


class Ejector:
    """Counts consecutive failures per node and ejects a node once they reach a threshold.

    The first ejection lasts `base_s`; each ejection that follows without a success in between
    doubles it, up to `max_s`. When the back-off ends the node is tried again (half-open): one
    success clears its record, one more failure ejects it again at once, for longer. This reacts
    within one request to a killed node, long before the health checker's TTL runs out.
    """

    def __init__(
        self,
        after_failures: int,
        base_s: float,
        max_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.after_failures = after_failures
        self.base_s = base_s
        self.max_s = max_s
        self.clock = clock
        self._records: dict[str, _Record] = {}
        self._identities: dict[str, str] = {}

    def failed(self, node_id: str) -> bool:
        """Record a failure; True when it ejects the node."""
        record = self._records.setdefault(node_id, _Record())
        record.failures += 1
        if record.failures < self.after_failures and record.ejections == 0:
            return False
        backoff_s = min(self.base_s * 2**record.ejections, self.max_s)
        record.ejections += 1
        record.failures = 0
        record.until = self.clock() + backoff_s
        return True

    def succeeded(self, node_id: str) -> None:
        if node_id in self._records:
            del self._records[node_id]

    def track(self, identities: Mapping[str, str]) -> None:
        """Follow the cluster's view, {node_id: identity of the running process}: a node that
        left it, or came back as a new process (new addresses), starts again with a clean record."""
        for node_id in list(self._records):
            if node_id not in identities or identities[node_id] != self._identities.get(node_id):
                del self._records[node_id]
        self._identities = dict(identities)

    def ejected(self) -> frozenset[str]:
        now = self.clock()
        return frozenset(node for node, record in self._records.items() if record.until > now)


class NodeFailed(GatewayError):
    """The node gave no answer (refused, reset, unavailable): another node may."""

    status = 503


class NodeRouting:
    """Picks the nodes for one request and sends it to one after another until one answers.

    A retry goes only to a node the request has not tried, only after a node failed before
    answering (NodeFailed), and only while the deadline allows. Retrying after a reset can run
    an inference twice on two nodes; Triton's inference routes are stateless, and a reset
    answer was never seen by the client, so the retry is what the client would have done
    itself. A timeout is not retried: the deadline is spent. A request of a sequence (a
    stateful model's) is never retried: its state is on one node (`attempt_sequence`).
    """

    def __init__(
        self, scheduler: SchedulerClient, ejector: Ejector, metrics: GatewayMetrics, max_attempts: int
    ) -> None:
        self.scheduler = scheduler
        self.ejector = ejector
        self.metrics = metrics
        self.max_attempts = max_attempts
        # Fed by the node view (service.open_core): which models' requests carry a sequence.
        self.stateful = StatefulModels()
        self.live = LiveSequences(scheduler.acquire, scheduler.release)

    async def attempt(
        self,
        model: str,
        version: str | None,
        deadline: float,
        send: Callable[[Pick, int, float], Awaitable[_Answer]],
        usable: Callable[[Pick], bool] | None = None,
        sequence: SequenceRequest | None = None,
    ) -> _Answer:
        """`send(pick, attempt, remaining_s)`'s answer from the first node that gives one; for a
        request of a `sequence`, from the sequence's node or none (`attempt_sequence`)."""
        # Idle sequences stop counting as load on their nodes even when no sequence comes again.
        self.live.expire()
        if sequence is not None:
            return await self.attempt_sequence(sequence, version, deadline, send, usable)
        tried: set[str] = set()
        failure = "none"
        for attempt in range(1, self.max_attempts + 1):
            pick = await self.next_node(model, version, tried, usable)
            if pick is None:
                break
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise DeadlineExceeded("deadline exceeded before a node could answer")
            if attempt > 1:
                self.metrics.retries.inc()
            self.scheduler.acquire(pick.node_id)
            try:
                answer = await send(pick, attempt, remaining_s)
            except NodeFailed as exc:
                failure = f"node {pick.node_id} {exc}"
                tried.add(pick.node_id)
                self.failed(pick.node_id)
                continue
            finally:
                self.scheduler.release(pick.node_id)
            self.ejector.succeeded(pick.node_id)
            return answer
        raise Unavailable(f"no node could serve model '{model}' now; last failure: {failure}")

    async def attempt_sequence(
        self,
        sequence: SequenceRequest,
        version: str | None,
        deadline: float,
        send: Callable[[Pick, int, float], Awaitable[_Answer]],
        usable: Callable[[Pick], bool] | None = None,
    ) -> _Answer:
        """One attempt, on the sequence's node (sequences.py): the node this gateway saw the
        sequence start on while it is a candidate, else its rendezvous node. Never a retry on
        another node, which has none of the sequence's state: SequenceLost instead."""
        model = sequence.model
        pinned = None if sequence.start else self.live.node(sequence.key)
        try:
            pick = await self._pick(model, version, set(), sequence.key, pinned)
        except NoNodeAvailable:
            if pinned is None:
                raise
            raise sequence.lost(pinned, "is not serving the model now") from None
        if pinned is not None and pick.node_id != pinned:
            raise sequence.lost(pinned, "is not serving the model now")
        if usable is not None and not usable(pick):
            raise Unavailable(f"node {pick.node_id} of sequence {sequence.sequence_id!r} is unusable now")
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            raise DeadlineExceeded("deadline exceeded before a node could answer")
        self.scheduler.acquire(pick.node_id)
        try:
            answer = await send(pick, 1, remaining_s)
        except NodeFailed as exc:
            self.failed(pick.node_id)
            raise sequence.lost(pick.node_id, f"failed ({exc})") from exc
        finally:
            self.scheduler.release(pick.node_id)
        self.ejector.succeeded(pick.node_id)
        self.live.served(sequence, pick.node_id, self.stateful.idle_s(model))
        return answer

    async def next_node(
        self, model: str, version: str | None, tried: set[str], usable: Callable[[Pick], bool] | None = None
    ) -> Pick | None:
        """The scheduler's pick among the nodes not tried yet, skipping those `usable` turns
        down; None once every node was tried. Raises UnknownModel or NoNodeAvailable when
        there was no node to begin with."""
        while True:
            try:
                pick = await self._pick(model, version, tried)
            except NoNodeAvailable:
                if not tried:
                    raise
                return None
            if usable is None or usable(pick):
                return pick
            tried.add(pick.node_id)

    def failed(self, node_id: str) -> None:
        if self.ejector.failed(node_id):
            self.metrics.ejections.labels(node_id).inc()
            log.warning("node ejected", extra={"node": node_id})

    async def _pick(
        self,
        model: str,
        version: str | None,
        tried: set[str],
        affinity: str | None = None,
        pinned: str | None = None,
    ) -> Pick:
        try:
            return await self.scheduler.pick(model, version, tried | self.ejector.ejected(), affinity, pinned)
        except NoNodeAvailable:
            # Every remaining node is ejected: better to try one than to fail outright.
            return await self.scheduler.pick(model, version, tried, affinity, pinned)
