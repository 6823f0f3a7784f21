"""Names and addresses of a node: its id, the host others reach it on, its Triton's URLs."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from tritonfleet.net import free_port, http_url

WILDCARD_HOSTS = ("", "0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class TritonPorts:
    http: int = 0
    grpc: int = 0
    metrics: int = 0

    @property
    def fixed(self) -> bool:
        return 0 not in (self.http, self.grpc, self.metrics)

    def pick(self, host: str) -> TritonPorts:
        """These ports, with a distinct free one for each 0."""
        chosen: list[int] = []
        for given in (self.http, self.grpc, self.metrics):
            port = given
            while port == 0 or (given == 0 and port in chosen):
                port = free_port(host)
            chosen.append(port)
        return TritonPorts(*chosen)


@dataclass(frozen=True, slots=True)
class TritonUrls:
    """Where a Triton answers: KServe v2 HTTP, gRPC (`grpc://host:port`), Prometheus scrape URL."""

    http: str
    grpc: str = ""
    metrics: str = ""

    @classmethod
    def on(cls, host: str, ports: TritonPorts) -> TritonUrls:
        return cls(
            http=http_url(host, ports.http),
            grpc=f"grpc://{host}:{ports.grpc}",
            metrics=f"{http_url(host, ports.metrics)}/metrics",
        )


def node_id(configured: str, hostname: str, manager_port: int) -> str:
    """The configured id, else `<hostname>-<manager port>`.

    Stable across restarts when the manager port is fixed (`node.port`); with a port picked at
    random, set `node.node_id` for a stable id. Characters the protocol does not allow in an
    id become `-`.
    """
    if configured:
        return configured
    return f"{re.sub(r'[^A-Za-z0-9._:-]', '-', hostname) or 'node'}-{manager_port}"


def public_host(advertise_host: str, bind_host: str, hostname: str | None = None) -> str:
    """The host other machines reach this node on: advertised, else bound, else the host name."""
    if advertise_host:
        return advertise_host
    if bind_host not in WILDCARD_HOSTS:
        return bind_host
    return hostname if hostname is not None else socket.gethostname()


def local_host(bind_host: str) -> str:
    """The host this machine reaches a server bound to bind_host on."""
    return "127.0.0.1" if bind_host in WILDCARD_HOSTS else bind_host
