"""Every control-plane service refuses a body over its limit with 413 before reading it: an
unauthenticated client cannot make one hold a gigabyte in memory."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tritonfleet.net import free_port
from tritonfleet.processes import ServiceProcess, wait_http_ok

GIGABYTE = 1 << 30
CHUNK = b"x" * (1 << 20)
# (command, the env prefix of its section, a route, and its answer to a streamed body: the
# scheduler takes no bodies, so it refuses the method without reading one)
SERVICES = [
    ("health-checker", "HEALTH", "/v1/nodes/register", 413),
    ("scheduler", "SCHEDULER", "/v1/schedule", 405),
    ("token-manager", "TOKEN_MANAGER", "/v1/auth/challenge", 413),
]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(params=SERVICES, ids=[service[0] for service in SERVICES])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, ServiceProcess, int]]:
    command, section, route, streamed_status = request.param
    port = free_port()
    env = {
        **os.environ,
        f"TRITONFLEET_{section}_PORT": str(port),
        "TRITONFLEET_CLUSTER_TOKEN": "test-token",
        "TRITONFLEET_PAYMENTS_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        "TRITONFLEET_CHAIN_RPC_URL": f"http://127.0.0.1:{free_port()}",
    }
    proc = ServiceProcess(command, [sys.executable, "-m", "tritonfleet", command], env, tmp_path / "log")
    proc.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/healthz", 60, proc)
        yield url + route, proc, streamed_status
    finally:
        proc.stop()


def declared_gigabyte(url: str) -> bytes:
    """The answer to headers that announce a gigabyte, of which only a megabyte comes."""
    address = httpx.URL(url)
    with socket.create_connection((address.host, address.port), timeout=10) as conn:
        head = f"POST {address.raw_path.decode()} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        conn.sendall(f"{head}Content-Length: {GIGABYTE}\r\n\r\n".encode() + CHUNK)
        return conn.recv(65536)


def gigabyte() -> Iterator[bytes]:
    for _ in range(GIGABYTE // len(CHUNK)):
        yield CHUNK


def test_a_gigabyte_body_is_refused_and_memory_stays_flat(service: tuple[str, ServiceProcess, int]) -> None:
    url, proc, streamed_status = service
    before = rss_bytes(proc.pid)
    assert declared_gigabyte(url).startswith(b"HTTP/1.1 413"), "refused on its Content-Length alone"
    try:
        streamed = httpx.post(url, content=gigabyte(), timeout=30)  # chunked: no length to check
        assert streamed.status_code == streamed_status
    except httpx.HTTPError:
        pass  # the server answered 413 and closed while the client was still sending
    assert rss_bytes(proc.pid) - before < 50 << 20, "the body was not held in memory"
    assert httpx.get(url.rsplit("/v1", 1)[0] + "/healthz", timeout=10).status_code == 200
