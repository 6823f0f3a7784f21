"""Small network helpers shared by the node manager, `up` and the tests."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now (the caller binds it soon after; races are retried by callers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def host_port(url: str) -> str:
    """`host:port` of a URL, as gRPC clients and tritonclient want it."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return f"{parts.hostname}:{parts.port}"
