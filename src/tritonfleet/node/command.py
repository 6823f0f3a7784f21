"""`tritonfleet node`: a manager and its Triton, run until SIGTERM or SIGINT, then drained."""

from __future__ import annotations

import asyncio
import logging
import signal

import uvloop

from tritonfleet.config import FleetConfig
from tritonfleet.node.errors import NodeError
from tritonfleet.node.service import NodeManager

log = logging.getLogger(__name__)


def serve(config: FleetConfig) -> int:
    """`tritonfleet node`: run a manager and its Triton until SIGTERM or SIGINT; drain; exit 0."""
    return uvloop.run(_serve(config))


async def _serve(config: FleetConfig) -> int:
    manager = NodeManager(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, manager.stopping.set)
    try:
        return await manager.run()
    except NodeError as exc:
        log.error("node manager failed", extra={"error": str(exc)})
        return exc.exit_code
    except OSError as exc:
        log.error(
            "cannot serve", extra={"error": str(exc), "host": config.node.host, "port": config.node.port}
        )
        return 1
