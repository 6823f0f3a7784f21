"""The health checker's background tasks: probe every node, expire silent ones."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tritonfleet.health.prober import Prober
from tritonfleet.health.registry import Registry

log = logging.getLogger(__name__)

# Expiry granularity, and the longest a coalesced load change waits before watchers see it.
TICK_S = 0.1


async def expire_forever(registry: Registry, tick_s: float = TICK_S) -> None:
    while True:
        registry.tick()
        await asyncio.sleep(tick_s)


async def probe_forever(
    registry: Registry, prober: Prober, interval_s: float, on_failure: Callable[[], None]
) -> None:
    """Probe all nodes every `interval_s` (from round start to round start, rounds never overlap)."""
    loop = asyncio.get_running_loop()
    while True:
        started_s = loop.time()
        try:
            await probe_round(registry, prober, on_failure)
        except Exception:
            # A bug in one round must not stop probing for the life of the service.
            log.exception("probe round failed")
        await asyncio.sleep(max(0.0, interval_s - (loop.time() - started_s)))


async def probe_round(registry: Registry, prober: Prober, on_failure: Callable[[], None]) -> None:
    """Probe every node once, concurrently, and record each result."""
    targets = registry.targets()
    results = await asyncio.gather(*(prober.probe(t) for t in targets), return_exceptions=True)
    for target, result in zip(targets, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("probe raised", extra={"node_id": target.node_id}, exc_info=result)
        ok = result is True
        registry.record_probe(target.node_id, ok)
        if not ok:
            on_failure()
