"""Small network helpers shared by the node manager, `up` and the tests."""

from __future__ import annotations

import random
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

# The uvicorn services close a connection whose request headers have not all arrived this long
# after it opened or after its previous answer ends its keep-alive time (slow-loris).
HEADER_TIMEOUT_S = 10.0
# The aiohttp servers (gateway, manager) close a connection idle this long, and one whose request
# headers have not all arrived by then: aiohttp's keep-alive timer is its header timeout too.
# Longer than the clients' own pool expiry (aiohttp's 15 s), so that a client never sends on a
# connection the server has just closed.
SERVER_IDLE_TIMEOUT_S = 75.0

# Where free ports are looked for: above the well-known services, below the ephemeral range.
_LOWEST_FREE_PORT = 15000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Our own, seeded from the OS: processes picking at once must not draw the same sequence.
_rng = random.Random()
# The ports free_port has handed out here: a caller may bind its port only later (a child
# process's), and until then the same port would look free to the next call.
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now, for the caller to bind soon after.

    Chosen below the kernel's ephemeral range: a port the kernel hands out for binding to 0 can
    be taken as the local end of an outgoing connection before the caller binds it (seen in the
    test suite: "address already in use"). Below that range only another listener can take it.
    """
    highest = _ephemeral_start() - 1
    for _ in range(100):
        port = _rng.randint(_LOWEST_FREE_PORT, highest)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise OSError(f"no free port between {_LOWEST_FREE_PORT} and {highest} on {host}")


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def http_url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def host_port(url: str) -> str:
    """`host:port` of a URL, as gRPC clients and tritonclient want it."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return f"{parts.hostname}:{parts.port}"


def trusting(cert_file: Path | None) -> ssl.SSLContext | bool:
    """What a check of our own TLS gateway trusts (`up`, `tritonfleet status`): the very
    certificate it was given, whoever signed it; with none, the system's authorities."""
    if cert_file is None:
        return True
    context = ssl.create_default_context(cafile=cert_file)
    # The certificate itself is the trust anchor, not only a self-signed root.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context
