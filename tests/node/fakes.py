"""A fake health checker that records what managers send, and helpers to build a node's world."""

from __future__ import annotations

import asyncio
import itertools
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
    secret: str | None  # the X-Node-Secret presented
    status: int


class FakeHealthChecker:
    """Answers `/v1/nodes/...` like the real one and records every call: 401 without the token,
    a secret per registered node, 403 for a call of a node without it, 404 for a heartbeat of an
    unregistered node. Registrations always succeed (no TTL here)."""

    _secrets = itertools.count(1)

    def __init__(self, token: str = TOKEN, interval_s: float = 0.2, ttl_s: float = 1.0) -> None:
        self.token = token
        self.answer = RegisterResponse(node_id="", heartbeat_interval_s=interval_s, ttl_s=ttl_s)
        self.calls: list[Call] = []
        self.secrets: dict[str, str] = {}
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
        return [
            Heartbeat.model_validate(c.body) for c in self.calls if c.status == 200 and c.body is not None
        ]

    def paths(self, method: str) -> list[str]:
        return [c.path for c in self.calls if c.method == method and c.status < 300]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        authorized = request.headers.get("Authorization") == f"Bearer {self.token}"
        secret = request.headers.get(RegisterResponse.SECRET_HEADER)
        status, answer = self._answer(request.method, request.path, body, secret) if authorized else (401, {})
        self.calls.append(Call(request.method, request.path, authorized, body, secret, status))
        if status == 204:
            return web.Response(status=204)
        return web.json_response(answer or {"error": f"refused: {status}"}, status=status)

    def _answer(
        self, method: str, path: str, body: dict[str, Any] | None, secret: str | None
    ) -> tuple[int, dict[str, Any]]:
        if path.endswith("/register"):
            assert body is not None
            node_id = body["node_id"]
            self.secrets[node_id] = f"{self.port}-secret-{next(self._secrets)}"
            update = {"node_id": node_id, "node_secret": self.secrets[node_id]}
            return 200, self.answer.model_copy(update=update).model_dump()
        node_id = path.split("/")[3]
        if node_id not in self.secrets:
            return (204, {}) if method == "DELETE" else (404, {})
        if secret != self.secrets[node_id]:
            return 403, {}
        if method == "DELETE":
            del self.secrets[node_id]
            return 204, {}
        return 200, {}


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
