"""The Envoy data plane: the process, supervised, and its dynamic configuration kept current.

EnvoyControl writes the bootstrap, starts Envoy and restarts it with back-off should it die,
and on every change of the node view rewrites the dynamic resources (resources.py), each file
renamed into Envoy's watched directory whole. A model's cluster appears before any route to it
and goes after its routes, so that no request is routed to a cluster Envoy does not know.
What Envoy's statistics say about grey failures (outliers.py: each model's attempt timeout, the
slow hosts of each cluster) changes the routes and endpoints the same way.
On close, Envoy's listeners drain gracefully for the gateway's shutdown grace, then it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from tritonfleet.config import FleetConfig, GatewayConfig
from tritonfleet.gateway import access_log
from tritonfleet.gateway.envoy import resources
from tritonfleet.gateway.envoy.binary import locate
from tritonfleet.gateway.envoy.outliers import HostCounts, PerTryTimeouts, SlowHosts
from tritonfleet.gateway.envoy.resources import Authorizing, Files, Ports
from tritonfleet.gateway.envoy.stats import EnvoyStats
from tritonfleet.gateway.errors import EnvoyStartError
from tritonfleet.gateway.metrics import GatewayMetrics
from tritonfleet.gateway.sequences import StatefulModels
from tritonfleet.health.watch import NodeWatcher
from tritonfleet.node.backoff import Backoff
from tritonfleet.processes import dying_with_parent
from tritonfleet.protocol import NodeView

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
# How long a new cluster may take to appear in Envoy before its routes are written anyway.
CLUSTER_WAIT_S = 5.0
RESTART_BACKOFF = Backoff(base_s=0.5, max_s=10.0)


class EnvoyControl:
    def __init__(
        self,
        config: FleetConfig,
        ports: Ports,
        watcher: NodeWatcher,
        metrics: GatewayMetrics,
        paid: Authorizing | None = None,
    ) -> None:
        """`paid`: payments are on, and the fast path's requests are held and charged there."""
        self.config = config
        self.gw = config.gateway
        self.ports = ports
        self.watcher = watcher
        self.binary = locate(self.gw.envoy_binary)
        self.run_dir = Path(tempfile.mkdtemp(prefix="tritonfleet-envoy-"))
        self.files = Files(str(self.run_dir / "xds"))
        os.mkdir(self.files.directory)
        self.admin_socket = str(self.gw.envoy_admin_socket or self.run_dir / "admin.sock")
        self.admin = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=self.admin_socket), base_url="http://envoy", timeout=2.0
        )
        self.paid = paid
        self.proc: subprocess.Popen[bytes] | None = None
        # The model clusters Envoy was given; None before the first write.
        self._clusters: set[str] | None = None
        # The stateful models the routes were written for: no fast route for those.
        self._stateful: frozenset[str] = frozenset()
        self._endpoints: dict[str, Any] = {}
        # Each cluster's node count (a gRPC cluster's bound), and the attempt timeouts, as written.
        self._sizes: dict[str, int] = {}
        self._attempts_s: dict[str, float] = {}
        # host:port of each node as Envoy's endpoints name it, for its statistics.
        self._node_at: dict[str, str] = {}
        self._changed = asyncio.Event()
        self.judges = _Judges(self.gw, self._changed.set, metrics, self._node_at.get)
        self.stats = EnvoyStats(self.admin, metrics, self._node_at.get, self.judges)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        """Write the configuration, start Envoy, wait until it serves; EnvoyStartError if not."""
        # First: a view that comes while Envoy starts must not be missed (an idle cluster may
        # send no other for long).
        self.watcher.subscribe(lambda nodes: self._changed.set())
        await self._apply(self.watcher.nodes)
        bootstrap = resources.bootstrap(self.ports, self.admin_socket, self.files, self.gw, self.paid)
        _write(str(self.run_dir / "bootstrap.json"), bootstrap)
        await self._launch()
        self._tasks = [
            asyncio.create_task(self._follow(), name="envoy config"),
            asyncio.create_task(self._supervise(), name="envoy supervisor"),
            asyncio.create_task(self.stats.run(), name="envoy statistics"),
        ]
        if self.gw.access_log_file is not None:
            self._tasks.append(asyncio.create_task(self._rotate_access_log(), name="access log rotation"))

    async def aclose(self, grace_s: float) -> None:
        """Drain the listeners for up to `grace_s`, stop Envoy, remove its files; once."""
        if self._stopping:
            return
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                await self.admin.post("/drain_listeners", params={"graceful": "", "inboundonly": ""})
                await self._wait_idle(grace_s)
            await asyncio.to_thread(_stop, self.proc)
        await self.admin.aclose()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    async def status(self) -> dict[str, Any]:
        """For `/v1/nodes` (cluster token only), `tritonfleet status` and the `make up` banner."""
        info = await self._server_info()
        return {
            "state": info.get("state", "unreachable"),
            # "<commit>/1.40.0/Clean/RELEASE/BoringSSL": the release.
            "version": [*info.get("version", "").split("/"), ""][1],
            "admin": self.admin_socket,
            # The nodes Envoy itself routes to, which may lag the gateway's view by a moment.
            "routed": sorted(self.stats.routed),
        }

    async def state(self) -> str:
        """Envoy's server state as its admin reports it (LIVE, DRAINING, ...), or why none."""
        info = await self._server_info()
        return str(info.get("state", f"unreachable ({info.get('error')})"))

    async def _server_info(self) -> dict[str, Any]:
        try:
            return dict(json.loads((await self.admin.get("/server_info")).text))
        except (httpx.HTTPError, ValueError, TypeError) as exc:
            return {"error": repr(exc)}

    async def _launch(self) -> None:
        log_path = self.run_dir / "envoy.log"
        argv = [
            str(self.binary),
            "-c",
            str(self.run_dir / "bootstrap.json"),
            # Several Envoys on one host (gateways, tests) must not share a hot-restart base id.
            "--use-dynamic-base-id",
            # A field Envoy does not know is a mistake in resources.py, not to be ignored.
            "--reject-unknown-dynamic-fields",
            "--log-level",
            "warning",
            # Envoy's own log to its file; its stderr, the gateway's, carries the access lines.
            "--log-path",
            str(log_path),
            # Access lines reach the file within a second (Envoy's default: 10 s).
            "--file-flush-interval-msec",
            "1000",
            "--drain-time-s",
            str(max(1, round(self.gw.shutdown_grace_s))),
        ]
        if self.gw.envoy_workers:
            argv += ["--concurrency", str(self.gw.envoy_workers)]
        self.proc = _spawn(argv, log_path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while await self.state() != "LIVE":
            if self.proc.poll() is not None:
                raise EnvoyStartError(f"envoy exited with {self.proc.returncode}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise EnvoyStartError(f"envoy not live within {START_TIMEOUT_S} s:\n{_tail(log_path)}")
            await asyncio.sleep(0.05)
        log.info(
            "envoy live",
            extra={
                "binary": str(self.binary),
                "http": self.ports.http,
                "grpc": self.ports.grpc,
                "admin": self.admin_socket,
            },
        )

    async def _supervise(self) -> None:
        backoff = RESTART_BACKOFF
        attempt = 0
        while True:
            assert self.proc is not None
            started = time.monotonic()
            status = await asyncio.to_thread(self.proc.wait)
            if self._stopping:
                return
            attempt = 0 if time.monotonic() - started > backoff.max_s else attempt + 1
            delay_s = backoff.delay_s(attempt)
            log.error("envoy exited; restarting", extra={"status": status, "after_s": delay_s})
            await asyncio.sleep(delay_s)
            try:
                await self._launch()
            except EnvoyStartError as exc:
                log.error("envoy restart failed", extra={"error": str(exc)})

    async def _follow(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                await self._apply(self.watcher.nodes)
            except OSError:
                log.exception("cannot write envoy's configuration")

    async def _apply(self, nodes: Sequence[NodeView]) -> None:
        members = resources.served(await asyncio.to_thread(_resolved, nodes))
        for name, cluster_nodes in members.items():
            for node in cluster_nodes:
                self._node_at[resources.node_address(name, node, self.gw.node_route)] = node.node_id
        names = set(members)
        stateful = StatefulModels(nodes).names
        for name, cluster_nodes in members.items():
            slow = self.judges.slow.ejected(name)
            assignment = resources.endpoints(name, cluster_nodes, self.gw.node_route, slow)
            if self._endpoints.get(name) != assignment:
                _write(self.files.endpoints(name), assignment)
                self._endpoints[name] = assignment
        known = self._clusters or set()
        added, removed = names - known, known - names
        # Only a gRPC cluster's resource depends on its size.
        resized = {
            name
            for name in names & known
            if resources.is_grpc(name) and len(members[name]) != self._sizes[name]
        }
        self._sizes.update((name, len(cluster_nodes)) for name, cluster_nodes in members.items())
        policy = self.config.scheduler.policy
        if added or resized or self._clusters is None:
            every = resources.clusters(known | names, self.files, self.gw, policy, self._sizes)
            _write(self.files.clusters, every)
            if self.proc is not None and added:
                await self._wait_clusters(added)
        attempts_s = dict(self.judges.timeouts.timeouts_s)
        if names == self._clusters and stateful == self._stateful and attempts_s == self._attempts_s:
            return
        _write(self.files.routes, resources.routes(names, self.gw, self.paid, stateful, attempts_s))
        # Paid gRPC calls go through the Python gateway, which charges them.
        grpc_routes = resources.grpc_routes(
            names, self.gw, fast=self.paid is None, stateful=stateful, attempts_s=attempts_s
        )
        _write(self.files.grpc_routes, grpc_routes)
        if removed:
            for name in removed:
                self._sizes.pop(name, None)
            _write(self.files.clusters, resources.clusters(names, self.files, self.gw, policy, self._sizes))
            for name in removed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.files.endpoints(name))
                self._endpoints.pop(name, None)
        self._clusters = names
        self._stateful = stateful
        self._attempts_s = attempts_s

    async def _rotate_access_log(self) -> None:
        """The gateway rolls the shared access log over (access_log.py); Envoy then reopens it."""
        while True:
            await asyncio.sleep(1.0)
            if await asyncio.to_thread(access_log.rotate_if_needed):
                with contextlib.suppress(httpx.HTTPError):
                    await self.admin.post("/reopen_logs")

    async def _wait_clusters(self, names: set[str]) -> None:
        deadline = time.monotonic() + CLUSTER_WAIT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                known = (await self.admin.get("/clusters")).text
                if all(f"\n{name}::" in f"\n{known}" for name in names):
                    return
            await asyncio.sleep(0.02)
        log.warning("envoy did not load new clusters in time", extra={"clusters": sorted(names)})

    async def _wait_idle(self, grace_s: float) -> None:
        """Until Envoy's downstream requests in flight are none, for at most `grace_s`."""
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            # The front door's listeners, not the admin's (this very request is one).
            stats = (
                await self.admin.get(
                    "/stats", params={"filter": r"^http\.(http|grpc)\.downstream_rq_active$"}
                )
            ).text
            if all(line.rsplit(":", 1)[-1].strip() == "0" for line in stats.splitlines() if line):
                return
            await asyncio.sleep(0.05)


class _Judges:
    """outliers.py's judges, fed by EnvoyStats; `changed()` when what they decide changes
    Envoy's resources (control's next _apply renders it)."""

    def __init__(
        self,
        gw: GatewayConfig,
        changed: Callable[[], None],
        metrics: GatewayMetrics,
        node_of: Callable[[str], str | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeouts = PerTryTimeouts.of(gw)
        self.slow = SlowHosts.of(gw)
        self.changed = changed
        self.metrics = metrics
        self.node_of = node_of
        self.clock = clock

    def hosts(self, clusters: Mapping[str, Mapping[str, HostCounts]]) -> None:
        for change in self.slow.observe(self.clock(), clusters):
            node = self.node_of(change.address) or change.address
            if change.ejected:
                self.metrics.ejections.labels(node).inc()
                log.warning(
                    "slow node ejected",
                    extra={
                        "node": node,
                        "cluster": change.cluster,
                        "latency_s": round(change.latency_s, 3),
                        "peers_s": round(change.peers_s, 3),
                    },
                )
            else:
                log.info("slow node back in rotation", extra={"node": node, "cluster": change.cluster})
            self.changed()

    def p99s(self, p99s_ms: Mapping[str, float | None]) -> None:
        if self.timeouts.observe(p99s_ms):
            log.info("attempt timeouts moved", extra={"attempt_timeouts_s": self.timeouts.timeouts_s})
            self.changed()


def _resolved(nodes: Sequence[NodeView]) -> list[NodeView]:
    """Nodes whose URLs name hosts by IP address, as Envoy's endpoints must; a node whose host
    does not resolve is left out (and logged), not the whole view."""
    out = []
    for node in nodes:
        try:
            out.append(
                node.model_copy(
                    update={
                        "triton_http_url": _by_ip(node.triton_http_url),
                        "triton_grpc_url": node.triton_grpc_url and _by_ip(node.triton_grpc_url),
                        "manager_url": _by_ip(node.manager_url),
                    }
                )
            )
        except OSError as exc:
            log.warning(
                "node host does not resolve; not routed by envoy",
                extra={"node": node.node_id, "error": str(exc)},
            )
    return out


def _by_ip(url: str) -> str:
    scheme, _, rest = url.partition("://")
    host, _, port = rest.partition("/")[0].rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = socket.gethostbyname(host)
    return f"{scheme}://{host}:{port}"


def _write(path: str, resource: dict[str, Any]) -> None:
    """Whole or not at all: written beside, then renamed into the watched directory."""
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".", suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        json.dump(resource, out)
    os.replace(temporary, path)


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    # From the event loop's thread, which lives as long as the gateway: the parent-death signal
    # fires when the spawning thread ends.
    with log_path.open("ab") as out:
        return subprocess.Popen(dying_with_parent(argv), stdin=subprocess.DEVNULL, stdout=out)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for signum, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait_s)
            return


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
