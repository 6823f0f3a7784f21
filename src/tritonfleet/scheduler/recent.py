"""Recent choices, counted as in flight by a scheduler that never hears when requests end."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from tritonfleet.scheduler.core import Scheduler


class RecentChoices:
    """Holds each choice as one in-flight request on its node for `window_s`, then lets it go.

    The scheduler service gets no acquire/release from the gateway, and a node's own counts
    reach it only with the next heartbeat. Without this, least-outstanding would send every
    request of that second to the node that looked idlest at its start. Counting a choice for
    about one heartbeat interval bridges the gap until the node's report includes it; the
    overlap, when both count the same request for a moment, weighs on all nodes alike.
    Expiry is lazy (on the next choice), so there are no timers to cancel at shutdown.
    """

    def __init__(
        self, scheduler: Scheduler, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.scheduler = scheduler
        self.window_s = window_s
        self.clock = clock
        # (expiry time, node id), in the order chosen, hence also of expiry.
        self._held: deque[tuple[float, str]] = deque()

    def add(self, node_id: str) -> None:
        self.scheduler.acquire(node_id)
        self._held.append((self.clock() + self.window_s, node_id))

    def expire(self) -> None:
        now = self.clock()
        while self._held and self._held[0][0] <= now:
            self.scheduler.release(self._held.popleft()[1])

    def __len__(self) -> int:
        return len(self._held)
