"""`tritonfleet node` as its own process: drains on SIGTERM, leaves nothing behind on SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.node.fakes import (
    TOKEN,
    FakeHealthChecker,
    alive,
    node_config,
    process_tree,
    repository,
    shm_regions,
    wait_until,
)
from tritonfleet.config import FleetConfig, to_env
from tritonfleet.protocol import NodeState


@contextmanager
def node_process(config: FleetConfig, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m tritonfleet node` configured through the environment, killed if still running."""
    env = {**os.environ, **to_env(config), "TRITONFLEET_CLUSTER_TOKEN": TOKEN}
    log_path = cwd / "manager.log"
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tritonfleet", "node"],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    except BaseException:
        print(log_path.read_text(errors="replace")[-4000:])
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def ready(checker: FakeHealthChecker) -> bool:
    return any(hb.state is NodeState.READY and hb.models for hb in checker.heartbeats())


async def exited(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    await wait_until(lambda: proc.poll() is not None, timeout_s, "the manager exited")
    return proc.wait()


async def test_sigterm_leaves_the_cluster_finishes_forwarded_requests_and_exits_0(tmp_path: Path) -> None:
    """On SIGTERM the manager announces `draining`, deregisters, lets a forwarded request in flight
    finish, stops Triton and exits 0 with no process left."""
    async with FakeHealthChecker() as checker:
        models = str(repository(tmp_path / "repo", ["simple", "slow"]))
        config = node_config(tmp_path, [checker.url], model_repository=models, drain_timeout_s=5.0)
        with node_process(config, tmp_path) as proc:
            await wait_until(lambda: ready(checker), 60, "a ready heartbeat")
            tree = process_tree(proc.pid)
            body = {"inputs": [{"name": "DELAY_MS", "shape": [1], "datatype": "INT32", "data": [1000]}]}
            manager_url = checker.heartbeats()[-1].manager_url
            async with httpx.AsyncClient(timeout=10) as client:
                slow = asyncio.create_task(client.post(f"{manager_url}/v2/models/slow/infer", json=body))
                await wait_until(lambda: any(hb.in_flight for hb in checker.heartbeats()), 5, "in flight")
                proc.send_signal(signal.SIGTERM)
                answer = await slow
            assert await exited(proc, 15) == 0
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [1000]
    assert checker.heartbeats()[-1].state is NodeState.DRAINING
    assert checker.paths("DELETE") == [f"/v1/nodes/{checker.heartbeats()[-1].node_id}"]
    assert alive(tree) == set()


async def test_a_sigkilled_manager_leaves_no_tritonserver_or_stub_behind(tmp_path: Path) -> None:
    """SIGKILL to the manager takes its guard, tritonserver and backend stubs down within a second,
    and their shared memory with them."""
    async with FakeHealthChecker() as checker:
        with node_process(node_config(tmp_path, [checker.url]), tmp_path) as proc:
            await wait_until(lambda: ready(checker), 60, "a ready heartbeat")
            tree = process_tree(proc.pid)
            assert len(tree) >= 4  # manager, guard, tritonserver, a stub
            prefix = shm_prefix(tree)
            proc.kill()
            proc.wait()
            killed_at = time.monotonic()
            await wait_until(lambda: not alive(tree), 3, f"processes gone: {alive(tree)}")
    assert time.monotonic() - killed_at < 1.0
    assert shm_regions(prefix) == [], "the stubs' shared memory is removed"


def shm_prefix(pids: set[int]) -> str:
    """The Python backend's shared-memory prefix, from the command line of tritonserver."""
    for pid in pids:
        for arg in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0"):
            if arg.startswith("--backend-config=python,shm-region-prefix-name="):
                return arg.rpartition("=")[2]
    raise AssertionError("no tritonserver with a shared-memory prefix")
