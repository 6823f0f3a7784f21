"""Keeps the node's Triton up (one the manager started) or watches it (one it attached to).

Both tell the manager through two callbacks: `on_ready()` once Triton is ready, and
`on_down(reason)` as soon as it is not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from tritonfleet.node.backoff import Backoff
from tritonfleet.node.errors import TritonStartError
from tritonfleet.node.metrics import NodeMetrics
from tritonfleet.node.observe import TritonObserver
from tritonfleet.node.triton import TritonProcess

log = logging.getLogger(__name__)

OnReady = Callable[[], Awaitable[None]]
OnDown = Callable[[str], Awaitable[None]]


class TritonSupervisor:
    """Starts `tritonserver` and restarts it whenever it exits.

    Failed starts and restarts wait `backoff` (doubling from restart_backoff_s up to
    restart_backoff_max_s); a run that lasted longer than the longest back-off resets it.
    """

    def __init__(
        self,
        triton: TritonProcess,
        backoff: Backoff,
        on_ready: OnReady,
        on_down: OnDown,
        metrics: NodeMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.triton = triton
        self.backoff = backoff
        self.on_ready = on_ready
        self.on_down = on_down
        self.metrics = metrics
        self.clock = clock

    async def run(self) -> None:
        failures = 0
        while True:
            if failures:
                await asyncio.sleep(self.backoff.delay_s(failures))
            try:
                await self.triton.start()
            except TritonStartError as exc:
                failures += 1
                log.error("tritonserver did not start", extra={"error": str(exc), "attempt": failures})
                continue
            started_at = self.clock()
            await self.on_ready()
            status = await self.triton.wait()
            self.metrics.triton_restarts.inc()
            await self.on_down(f"tritonserver exited with status {status}")
            failures = 1 if self.clock() - started_at > self.backoff.max_s else failures + 1
            log.error(
                "tritonserver exited; restarting",
                extra={
                    "status": status,
                    "delay_s": self.backoff.delay_s(failures),
                    "log": str(self.triton.log_path),
                },
            )


class TritonWatcher:
    """Polls the readiness of a Triton that someone else runs, every interval_s."""

    def __init__(
        self, observer: TritonObserver, http_url: str, on_ready: OnReady, on_down: OnDown, interval_s: float
    ) -> None:
        self.observer = observer
        self.http_url = http_url
        self.on_ready = on_ready
        self.on_down = on_down
        self.interval_s = interval_s

    async def run(self) -> None:
        ready = False
        while True:
            now = await self.observer.ready(self.http_url)
            if now and not ready:
                await self.on_ready()
            elif ready and not now:
                await self.on_down(f"{self.http_url} is not ready")
            ready = now
            await asyncio.sleep(self.interval_s)
