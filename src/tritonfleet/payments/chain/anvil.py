"""The one wrapper over the `anvil` subprocess: the local Ethereum node of development and tests.

With a state file anvil loads the chain at start and dumps it on a graceful exit (SIGTERM or
SIGINT), so balances, contracts and past blocks survive a restart; a SIGKILL loses what
happened since the last dump (every `state_interval_s`, when set).
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any, TypedDict

import httpx

from tritonfleet.net import http_url
from tritonfleet.payments.chain import paths
from tritonfleet.payments.errors import PaymentsError
from tritonfleet.processes import ServiceProcess

log = logging.getLogger(__name__)

# npm's platform packages of @foundry-rs/anvil, by (system, machine).
_NPM_PLATFORMS = {
    ("linux", "x86_64"): "linux-amd64",
    ("linux", "aarch64"): "linux-arm64",
    ("darwin", "x86_64"): "darwin-amd64",
    ("darwin", "arm64"): "darwin-arm64",
}


class AnvilError(PaymentsError):
    """Root of the errors of the anvil subprocess.

    AnvilError
    ├── AnvilNotFound       no anvil binary (run `make`, which installs it from npm)
    └── AnvilStartError     anvil exited or did not answer JSON-RPC in time; the log's tail says why
    """


class AnvilNotFound(AnvilError):
    pass


class AnvilStartError(AnvilError):
    pass


class RpcRequest(TypedDict):
    jsonrpc: str
    id: int
    method: str
    params: list[Any]


def find_anvil() -> Path:
    """The anvil binary: the project's npm install first (the pinned version), then PATH.

    The npm package's native binary is preferred to its `node_modules/.bin/anvil` launcher: the
    launcher is a Node script that exits on SIGTERM before anvil has finished dumping its state,
    and a SIGKILL of the launcher would leave anvil running.
    """
    root = paths.project_root() / "node_modules" / "@foundry-rs"
    candidates: list[Path | None] = []
    npm_platform = _NPM_PLATFORMS.get((platform.system().lower(), platform.machine().lower()))
    if npm_platform is not None:
        candidates.append(root / f"anvil-{npm_platform}" / "bin" / "anvil")
    candidates.append(root / "anvil" / "dist" / "anvil")
    on_path = shutil.which("anvil")
    candidates.append(Path(on_path) if on_path else None)
    candidates.append(paths.node_bin("anvil"))
    for candidate in candidates:
        if candidate is not None and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise AnvilNotFound("anvil not found: run `make` (npm install) or put anvil on PATH")


class Anvil:
    """One anvil process on `host:port`, serving `chain_id`, with its state in `state_file`."""

    def __init__(
        self,
        host: str,
        port: int,
        chain_id: int,
        state_file: Path | None,
        log_path: Path,
        state_interval_s: int | None = None,
        binary: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.chain_id = chain_id
        self.state_file = state_file
        self.state_interval_s = state_interval_s
        self.binary = binary
        self.process = ServiceProcess("anvil", [], dict(os.environ), log_path)

    @property
    def rpc_url(self) -> str:
        return http_url(self.host, self.port)

    def argv(self) -> list[str]:
        binary = self.binary or find_anvil()
        argv = [str(binary), "--host", self.host, "--port", str(self.port), "--chain-id", str(self.chain_id)]
        if self.state_file is not None:
            argv += ["--state", str(self.state_file)]
            if self.state_interval_s is not None:
                argv += ["--state-interval", str(self.state_interval_s)]
        return argv

    def start(self, timeout_s: float = 10.0) -> None:
        if self.state_file is not None:
            # anvil skips the dump, silently, when the folder is missing.
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.process.argv = self.argv()
        self.process.start()
        log.info("anvil started", extra={"pid": self.process.pid, "rpc_url": self.rpc_url})
        try:
            self._wait_ready(timeout_s)
        except AnvilStartError:
            self.process.kill()
            raise

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, which makes anvil dump its state and exit; SIGKILL after timeout_s."""
        code = self.process.stop(timeout_s)
        log.info("anvil stopped", extra={"exit_code": code, "state_file": str(self.state_file)})
        return code

    def alive(self) -> bool:
        return self.process.alive()

    def __enter__(self) -> Anvil:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self, timeout_s: float) -> None:
        request: RpcRequest = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise AnvilStartError(f"anvil exited early; its log ends:\n{self.process.tail()}")
            try:
                answer = httpx.post(self.rpc_url, json=request, timeout=1.0)
            except httpx.HTTPError:
                answer = None
            # Another node on the port may answer while ours is failing to bind it: check both.
            if answer is not None and answer.status_code == 200 and self._is_ours(answer.json()):
                return
            time.sleep(0.05)
        raise AnvilStartError(f"anvil did not answer on {self.rpc_url} within {timeout_s} s")

    def _is_ours(self, answer: Any) -> bool:
        return (
            self.process.alive() and isinstance(answer, dict) and answer.get("result") == hex(self.chain_id)
        )
