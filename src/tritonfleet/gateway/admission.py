"""Overload: bounded work in flight, a bounded queue, and beyond it an answer at once.

Without bounds a spike queues every request until its deadline: latency grows for all,
memory with it, and goodput collapses as requests time out after having been served. With
them, the gateway keeps at most `limit` requests in flight and `per_node` on any one node;
up to `queue_limit` more wait, first come first served; the rest get 503 (gRPC UNAVAILABLE)
with Retry-After at once, which well-behaved clients back off on.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from tritonfleet.gateway.errors import Unavailable


class Overloaded(Unavailable):
    """The gateway, or every node that serves the model, is at its limit and the queue is full."""


class Admission:
    def __init__(self, limit: int, per_node: int, queue_limit: int) -> None:
        self.limit = limit
        self.per_node = per_node
        self.queue_limit = queue_limit
        self.in_flight = 0
        self.queued = 0
        self._on_node: dict[str, int] = {}
        # The nodes at their limit, kept as they fill and empty: every pick excludes them.
        self.full: set[str] = set()
        self._for_gateway: deque[asyncio.Future[None]] = deque()
        # Requests whose model has every node full, by model: a slot freed on any node wakes
        # the first of each model, which checks whether the node serves it.
        self._for_node: dict[str, deque[asyncio.Future[None]]] = {}

    @asynccontextmanager
    async def admitted(self, deadline: float) -> AsyncIterator[None]:
        """One of the gateway's `limit` slots for the request's life, waiting in the queue
        for one until `deadline` when all are taken."""
        if self.in_flight >= self.limit or self._for_gateway:
            await self._wait(
                self._for_gateway, deadline, lambda: self.in_flight < self.limit, "the gateway is"
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            _wake_first(self._for_gateway)

    async def wait_for_node(self, model: str, deadline: float) -> None:
        """Wait in the queue for a slot on some node: every node serving `model` is full."""
        waiters = self._for_node.setdefault(model, deque())
        try:
            await self._wait(waiters, deadline, None, f"every node serving model '{model}' is")
        finally:
            if not waiters:
                self._for_node.pop(model, None)

    def take(self, node_id: str) -> None:
        count = self._on_node.get(node_id, 0) + 1
        self._on_node[node_id] = count
        if count >= self.per_node:
            self.full.add(node_id)

    def give(self, node_id: str) -> None:
        count = self._on_node[node_id] - 1
        if count:
            self._on_node[node_id] = count
        else:
            del self._on_node[node_id]
        if count < self.per_node:
            self.full.discard(node_id)
        for waiters in self._for_node.values():
            _wake_first(waiters)

    async def _wait(
        self,
        waiters: deque[asyncio.Future[None]],
        deadline: float,
        can_go: Callable[[], bool] | None,
        who: str,
    ) -> None:
        """Queue until woken and `can_go` (None: woken is enough, the caller checks)."""
        if self.queued >= self.queue_limit:
            raise Overloaded(f"{who} at its limit of requests in flight and the queue is full; retry later")
        self.queued += 1
        front = False
        try:
            while True:
                waiter = asyncio.get_running_loop().create_future()
                if front:
                    waiters.appendleft(waiter)
                else:
                    waiters.append(waiter)
                try:
                    await asyncio.wait_for(waiter, max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    if waiter in waiters:
                        waiters.remove(waiter)
                    raise Overloaded(f"{who} at its limit of requests in flight; retry later") from None
                except asyncio.CancelledError:
                    # The client went away: a wake meant for it goes to the next in line.
                    if waiter in waiters:
                        waiters.remove(waiter)
                    elif waiter.done() and not waiter.cancelled():
                        _wake_first(waiters)
                    raise
                if can_go is None or can_go():
                    return
                # Woken but beaten to the slot (by a request that did not queue): keep the place.
                front = True
        finally:
            self.queued -= 1


def _wake_first(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return
