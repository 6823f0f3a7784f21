"""Routing one request: which node to try, the attempts one node after another, ejection.

`NodeRouting.attempt` is the one attempt loop of the gateway; the HTTP and gRPC forwarders only
say how to send to one node (`http/forwarding.py`, `grpc/forwarding.py`). A node that fails is
ejected by the `Ejector` (passive health checking), long before the health checker's TTL runs out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tritonfleet.config import GatewayConfig
from tritonfleet.gateway.admission import Admission, Overloaded
from tritonfleet.gateway.errors import DeadlineExceeded, GatewayError, Unavailable
from tritonfleet.gateway.latency import AttemptTimeouts, LatencyOutliers
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


@dataclass(slots=True)
class _Attempt:
    pick: Pick
    at: float
    late: bool = False


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A cancelled attempt's end is of no interest; reading it keeps asyncio from warning."""
    if not task.cancelled():
        task.exception()


class NodeFailed(GatewayError):
    """The node gave no answer (refused, reset, unavailable): another node may."""

    status = 503


class NodeRouting:
    """Picks the nodes for one request and sends it to one after another until one answers.

    A retry goes only to a node the request has not tried, only after a node failed before
    answering (NodeFailed), and only while the deadline allows. Retrying after a reset can run
    an inference twice on two nodes; Triton's inference routes are stateless, and a reset
    answer was never seen by the client, so the retry is what the client would have done
    itself. A request of a sequence (a stateful model's) is never retried: its state is on one
    node (`attempt_sequence`).

    Grey failures (latency.py): an attempt slower than the model's `timeouts` is late: its node
    counts a failure (a hung node is ejected at its first late answer) and, with `hedge`,
    another node is asked while the late one goes on; the first answer wins and the others are
    cancelled. A node far slower than its peers (`outliers`) is ejected as a failing one is.
    Overload (admission.py): the request holds one of the gateway's slots and one of its node's.
    """

    def __init__(
        self,
        scheduler: SchedulerClient,
        ejector: Ejector,
        metrics: GatewayMetrics,
        max_attempts: int,
        *,
        timeouts: AttemptTimeouts | None = None,
        outliers: LatencyOutliers | None = None,
        admission: Admission | None = None,
        hedge: bool = False,
    ) -> None:
        self.scheduler = scheduler
        self.ejector = ejector
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.timeouts = timeouts
        self.outliers = outliers
        self.admission = admission or Admission(limit=1 << 30, per_node=1 << 30, queue_limit=0)
        self.hedge = hedge
        # Fed by the node view (service.open_core): which models' requests carry a sequence.
        self.stateful = StatefulModels()
        self.live = LiveSequences(scheduler.acquire, scheduler.release)

    @classmethod
    def configured(
        cls, scheduler: SchedulerClient, ejector: Ejector, metrics: GatewayMetrics, gw: GatewayConfig
    ) -> NodeRouting:
        return cls(
            scheduler,
            ejector,
            metrics,
            gw.max_attempts,
            timeouts=AttemptTimeouts.of(gw),
            outliers=LatencyOutliers(gw.outlier_latency_factor),
            admission=Admission(gw.max_in_flight, gw.max_in_flight_per_node, gw.max_queued),
            hedge=gw.hedge,
        )

    async def attempt(
        self,
        model: str,
        version: str | None,
        deadline: float,
        send: Callable[[Pick, int, float], Awaitable[_Answer]],
        usable: Callable[[Pick], bool] | None = None,
        sequence: SequenceRequest | None = None,
        discard: Callable[[_Answer], None] | None = None,
    ) -> _Answer:
        """`send(pick, attempt, remaining_s)`'s answer from the first node that gives one; for a
        request of a `sequence`, from the sequence's node or none (`attempt_sequence`).
        `discard` lets go of an answer that lost a hedge race (a relayed answer's connection)."""
        # Idle sequences stop counting as load on their nodes even when no sequence comes again.
        self.live.expire()
        try:
            async with self.admission.admitted(deadline):
                if sequence is not None:
                    return await self.attempt_sequence(sequence, version, deadline, send, usable)
                return await self._attempt_stateless(model, version, deadline, send, usable, discard)
        except Overloaded:
            self.metrics.overloaded.inc()
            raise

    async def _attempt_stateless(
        self,
        model: str,
        version: str | None,
        deadline: float,
        send: Callable[[Pick, int, float], Awaitable[_Answer]],
        usable: Callable[[Pick], bool] | None,
        discard: Callable[[_Answer], None] | None,
    ) -> _Answer:
        tried: set[str] = set()
        # The attempts under way: their node, when each began, whether it is late already.
        running: dict[asyncio.Task[_Answer], _Attempt] = {}
        failure = "none"
        try:
            while True:
                if not running or self._hedging(running):
                    pick = await self._next_attempt(model, version, tried, usable, deadline, bool(running))
                    if pick is not None:
                        running[self._start(pick, len(tried), send, deadline)] = _Attempt(
                            pick, time.monotonic()
                        )
                if not running:
                    raise Unavailable(f"no node could serve model '{model}' now; last failure: {failure}")
                done = await self._first_done(model, running, deadline)
                for task in done:
                    started = running.pop(task)
                    self._release(started.pick.node_id)
                    try:
                        answer = task.result()
                    except NodeFailed as exc:
                        failure = f"node {started.pick.node_id} {exc}"
                        self.failed(started.pick.node_id)
                        continue
                    self._answered(model, started, time.monotonic() - started.at)
                    # Any other attempt done at the same time is let go of below, as are those running.
                    return answer
        finally:
            for task, started in running.items():
                self._release(started.pick.node_id)
                self._release_answer(task, discard)

    def _hedging(self, running: Mapping[asyncio.Task[Any], _Attempt]) -> bool:
        """Whether to ask one more node now: every attempt under way is late."""
        return self.hedge and all(attempt.late for attempt in running.values())

    async def _next_attempt(
        self,
        model: str,
        version: str | None,
        tried: set[str],
        usable: Callable[[Pick], bool] | None,
        deadline: float,
        hedging: bool,
    ) -> Pick | None:
        """The node of the next attempt, marked tried; None when none is left to try (or, for
        a hedge, none is free: the late attempt goes on alone rather than wait in the queue)."""
        while len(tried) < self.max_attempts:
            if deadline - time.monotonic() <= 0:
                raise DeadlineExceeded("deadline exceeded before a node could answer")
            busy = self.admission.full - tried
            pick = await self.next_node(model, version, tried | busy, usable)
            if pick is None and busy and not hedging:
                # Are the nodes left all at their limit, or none of them serving the model?
                pick = await self.next_node(model, version, set(tried), usable)
                if pick is not None and pick.node_id in busy:
                    # Queue for a slot on one of them (Overloaded when the queue is full).
                    await self.admission.wait_for_node(model, deadline)
                    continue
            if pick is None:
                return None
            if tried or hedging:
                (self.metrics.hedges if hedging else self.metrics.retries).inc()
            tried.add(pick.node_id)
            return pick
        return None

    def _start(
        self,
        pick: Pick,
        attempt: int,
        send: Callable[[Pick, int, float], Awaitable[_Answer]],
        deadline: float,
    ) -> asyncio.Task[_Answer]:
        self.scheduler.acquire(pick.node_id)
        self.admission.take(pick.node_id)
        return asyncio.ensure_future(send(pick, attempt, deadline - time.monotonic()))

    def _release(self, node_id: str) -> None:
        self.scheduler.release(node_id)
        self.admission.give(node_id)

    async def _first_done(
        self, model: str, running: Mapping[asyncio.Task[_Answer], _Attempt], deadline: float
    ) -> set[asyncio.Task[_Answer]]:
        """The attempts done by the time the next one turns late (which is then marked, its
        node counting a failure) or the deadline (DeadlineExceeded)."""
        patience_s = self.timeouts.timeout_s(model) if self.timeouts else None
        now = time.monotonic()
        wake = deadline
        if patience_s is not None:
            wake = min([deadline, *(a.at + patience_s for a in running.values() if not a.late)])
        done, _ = await asyncio.wait(
            running, timeout=max(0.0, wake - now), return_when=asyncio.FIRST_COMPLETED
        )
        if done:
            return done
        now = time.monotonic()
        if now >= deadline:
            nodes = ", ".join(attempt.pick.node_id for attempt in running.values())
            raise DeadlineExceeded(f"node {nodes} did not answer within the deadline")
        for attempt in running.values():
            if not attempt.late and patience_s is not None and now - attempt.at >= patience_s:
                attempt.late = True
                self.metrics.upstream.labels(attempt.pick.node_id, "late").inc()
                self.failed(attempt.pick.node_id)
        return set()

    def _answered(self, model: str, attempt: _Attempt, seconds: float) -> None:
        if self.timeouts is not None:
            self.timeouts.observe(model, seconds)
        node_id = attempt.pick.node_id
        slow = False if self.outliers is None else self.outliers.observe(model, node_id, seconds)
        if slow:
            log.warning("node slow against its peers", extra={"node": node_id, "model": model})
            self.failed(node_id)
        elif slow is False and not attempt.late:
            # A late answer is no success: the node still counts as failing (ejected or not).
            # Nor is one of the first few after a node came back, before it can be judged fast:
            # a node slow for good would have its back-off start over at every return.
            self.ejector.succeeded(node_id)

    @staticmethod
    def _release_answer(task: asyncio.Task[_Answer], discard: Callable[[_Answer], None] | None) -> None:
        """Let go of an attempt that lost: cancel it, or free the answer it already has."""
        if not task.done():
            task.cancel()
            task.add_done_callback(_retrieve)
        elif not task.cancelled() and task.exception() is None and discard is not None:
            discard(task.result())

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
        self.admission.take(pick.node_id)
        try:
            answer = await send(pick, 1, remaining_s)
        except NodeFailed as exc:
            self.failed(pick.node_id)
            raise sequence.lost(pick.node_id, f"failed ({exc})") from exc
        finally:
            self._release(pick.node_id)
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
