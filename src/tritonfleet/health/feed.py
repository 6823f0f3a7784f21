"""Wakes long-polling watchers when the registry changes, without polling it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class ChangeFeed:
    """A broadcast "something changed" signal for any number of waiters.

    Each `publish` sets the current event and replaces it with a fresh one: everyone waiting
    at that moment wakes, and later waiters block on the new event. Waiters re-check their
    own condition after waking, so a publish that does not concern them costs one wake-up.
    """

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def publish(self, _version: int = 0) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until `done()` holds or `timeout_s` passes; whether it holds."""
        try:
            async with asyncio.timeout(timeout_s):
                while not done():
                    await self._changed.wait()
        except TimeoutError:
            pass
        return done()
