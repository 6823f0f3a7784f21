"""TritonSupervisor's restart logic, with a fake TritonProcess that spawns nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.node.fakes import wait_until
from tritonfleet.node.backoff import Backoff
from tritonfleet.node.dist import TritonDist
from tritonfleet.node.endpoints import TritonPorts
from tritonfleet.node.errors import TritonStartError
from tritonfleet.node.metrics import NodeMetrics
from tritonfleet.node.options import TritonOptions
from tritonfleet.node.supervisor import TritonSupervisor
from tritonfleet.node.triton import TritonProcess


async def never_ready(url: str) -> bool:
    return False


class FakeTriton(TritonProcess):
    """Fails its first `failing_starts` starts, then exits with each of `exits` in turn, then runs on."""

    def __init__(self, failing_starts: int, exits: list[int]) -> None:
        options = TritonOptions(Path("repo"), ports=TritonPorts(1, 2, 3))
        super().__init__(options, TritonDist(Path("/bin/false")), never_ready)
        self.failing_starts = failing_starts
        self.exits = exits
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.failing_starts:
            raise TritonStartError("port taken")

    async def wait(self) -> int:
        if self.exits:
            return self.exits.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_failed_starts_and_exits_are_retried_and_reported() -> None:
    """Two failed starts, a run that ends in SIGKILL, then a lasting run: ready, down, ready."""
    triton = FakeTriton(failing_starts=2, exits=[137])
    events: list[str] = []
    metrics = NodeMetrics()

    async def on_ready() -> None:
        events.append("ready")

    async def on_down(reason: str) -> None:
        events.append(f"down: {reason}")

    supervisor = TritonSupervisor(triton, Backoff(0.001, 0.01), on_ready, on_down, metrics)
    task = asyncio.create_task(supervisor.run())
    await wait_until(lambda: len(events) == 3, 2, "ready, down, ready")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert events == ["ready", "down: tritonserver exited with status 137", "ready"]
    assert triton.starts == 4
    assert metrics.registry.get_sample_value("tritonfleet_node_triton_restarts_total") == 1
