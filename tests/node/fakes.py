"""A fake health checker that records what managers send, and helpers to build a node's world."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from tritonfleet.config import FleetConfig, load_config
from tritonfleet.net import free_port
from tritonfleet.protocol import Heartbeat, RegisterResponse

MODELS = Path(__file__).resolve().parents[2] / "models"
TOKEN = "test-cluster-token"

# A model that sleeps `delay_ms` before echoing its input: keeps requests in flight.
SLOW_CONFIG = """
name: "slow"
backend: "python"
max_batch_size: 0
input [ { name: "DELAY_MS" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "DELAY_MS_OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""
SLOW_MODEL = """
import time
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            delay = pb_utils.get_input_tensor_by_name(request, "DELAY_MS").as_numpy()
            time.sleep(int(delay[0]) / 1000)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("DELAY_MS_OUT", delay)]))
        return responses
"""


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    authorized: bool
    body: dict[str, Any] | None


class FakeHealthChecker:
    """Answers `/v1/nodes/...` like the real one (401 without the token) and records every call."""

    def __init__(self, token: str = TOKEN, interval_s: float = 0.2, ttl_s: float = 1.0) -> None:
        self.token = token
        self.answer = RegisterResponse(node_id="", heartbeat_interval_s=interval_s, ttl_s=ttl_s)
        self.calls: list[Call] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = web.Application()
        app.router.add_route("*", "/v1/nodes/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)

    async def __aenter__(self) -> FakeHealthChecker:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    def heartbeats(self) -> list[Heartbeat]:
        """Bodies of the accepted registrations and heartbeats, oldest first."""
        return [Heartbeat.model_validate(c.body) for c in self.calls if c.authorized and c.body is not None]

    def paths(self, method: str) -> list[str]:
        return [c.path for c in self.calls if c.method == method and c.authorized]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        authorized = request.headers.get("Authorization") == f"Bearer {self.token}"
        self.calls.append(Call(request.method, request.path, authorized, body))
        if not authorized:
            return web.json_response({"error": "unauthorized"}, status=401)
        if request.path.endswith("/register"):
            assert body is not None
            return web.json_response(self.answer.model_copy(update={"node_id": body["node_id"]}).model_dump())
        return web.json_response({})


def repository(root: Path, names: Iterable[str]) -> Path:
    """A model repository of links to the project's models, plus `slow` when named."""
    root.mkdir(parents=True)
    for name in names:
        if name == "slow":
            (root / "slow" / "1").mkdir(parents=True)
            (root / "slow" / "config.pbtxt").write_text(SLOW_CONFIG)
            (root / "slow" / "1" / "model.py").write_text(SLOW_MODEL)
        else:
            (root / name).symlink_to(MODELS / name, target_is_directory=True)
    return root


def node_config(tmp_path: Path, health_urls: list[str], **node: Any) -> FleetConfig:
    """A node on free ports serving `simple`, with short timeouts, talking to health_urls."""
    empty = tmp_path / "fleet.toml"
    empty.touch()
    overrides = {
        "cluster": {"token": TOKEN, "health_urls": health_urls},
        "health": {"heartbeat_interval_s": 0.2},
        "node": {
            "model_repository": str(repository(tmp_path / "models", ["simple"])),
            "drain_timeout_s": 1.0,
            "repository_poll_s": 1,
            "restart_backoff_s": 0.1,
            "log_dir": str(tmp_path / "logs"),
            **node,
        },
    }
    return load_config(empty, env={}, overrides=overrides)


async def wait_until(done: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.05)


def process_tree(root_pid: int) -> set[int]:
    """root_pid and its descendants, alive now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root_pid]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def alive(pids: Iterable[int]) -> set[int]:
    """Those of pids that are still running (zombies count as gone)."""
    left = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            left.add(pid)
    return left


def shm_regions(prefix: str) -> list[Path]:
    """Shared-memory regions in /dev/shm whose names start with prefix."""
    return list(Path("/dev/shm").glob(f"{prefix}*"))
