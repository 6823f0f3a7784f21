"""Every control-plane service bounds what one unauthenticated client can hold: a body over its
limit is refused with 413 before it is read (a gigabyte leaves memory flat), headers or a body
trickled in too slowly lose the connection (slow-loris), and connections beyond the cap get 503."""

from __future__ import annotations

import os
import socket
import sys
import time
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
    ("web", "WEB", "/api/wallet/challenge", 413),
]
# Short bounds for the slow-client tests, so that they run in seconds.
HEADER_TIMEOUT_S = 3.0
BODY_TIMEOUT_S = 3.0
MAX_CONNECTIONS = 20
# How long a trickling client keeps going before the test gives up on being cut off.
TRICKLE_FOR_S = 20.0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module", params=SERVICES, ids=[service[0] for service in SERVICES])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ServiceProcess, int]]:
    command, section, route, streamed_status = request.param
    tmp_path = tmp_path_factory.mktemp(command)
    port = free_port()
    env = {
        **os.environ,
        f"TRITONFLEET_{section}_PORT": str(port),
        f"TRITONFLEET_{section}_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        f"TRITONFLEET_{section}_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        f"TRITONFLEET_{section}_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
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


def healthz_of(url: str) -> str:
    return str(httpx.URL(url).copy_with(path="/healthz"))


def connect(url: str) -> socket.socket:
    address = httpx.URL(url)
    return socket.create_connection((address.host, address.port), timeout=TRICKLE_FOR_S)


def cut_off_while_trickling(conn: socket.socket, start: bytes, byte: bytes) -> bytes:
    """Sends `start`, then `byte` every 0.2 s until the server answers or closes; what it said
    (b"" for a close without a word). Fails if the server keeps listening for TRICKLE_FOR_S."""
    conn.sendall(start)
    conn.setblocking(False)
    deadline = time.monotonic() + TRICKLE_FOR_S
    while time.monotonic() < deadline:
        try:
            return conn.recv(65536)
        except BlockingIOError:
            pass
        try:
            conn.send(byte)
        except (BrokenPipeError, ConnectionResetError):
            return b""
        time.sleep(0.2)
    raise AssertionError(f"the server still listened to a trickling client after {TRICKLE_FOR_S} s")


def declared_gigabyte(url: str) -> bytes:
    """The answer to headers that announce a gigabyte, of which only a megabyte comes."""
    address = httpx.URL(url)
    with connect(url) as conn:
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
    assert httpx.get(healthz_of(url), timeout=10).status_code == 200


def test_headers_trickled_in_lose_the_connection(service: tuple[str, ServiceProcess, int]) -> None:
    url, _, _ = service
    path = httpx.URL(url).raw_path
    with connect(url) as conn:
        answer = cut_off_while_trickling(conn, b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a")
    assert answer in (b"", b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")


def test_a_body_trickled_in_is_refused_with_408(service: tuple[str, ServiceProcess, int]) -> None:
    url, _, streamed_status = service
    if streamed_status == 405:
        pytest.skip("the scheduler takes no bodies: it answers before reading one")
    path = httpx.URL(url).raw_path
    head = (
        b"POST "
        + path
        + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    with connect(url) as conn:
        answer = cut_off_while_trickling(conn, head + b"{", b" ")
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"did not arrive within" in answer


def test_connections_beyond_the_cap_get_503_until_some_close(
    service: tuple[str, ServiceProcess, int],
) -> None:
    url, _, _ = service
    healthz = healthz_of(url)
    held = [connect(url) for _ in range(MAX_CONNECTIONS)]
    try:
        assert httpx.get(healthz, timeout=10).status_code == 503
    finally:
        for conn in held:
            conn.close()
    assert httpx.get(healthz, timeout=10).status_code == 200
