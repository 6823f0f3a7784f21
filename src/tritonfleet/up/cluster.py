"""A whole cluster on one machine: what `tritonfleet up` runs, and the end-to-end tests too.

One health checker, one scheduler, one gateway and N nodes, each its own process running the
very commands a multi-machine deployment runs. State (token, logs) lives under `.tritonfleet/`.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx

from tritonfleet.config import FleetConfig, NodeConfig, to_env
from tritonfleet.net import trusting
from tritonfleet.processes import ServiceProcess, wait_http_ok
from tritonfleet.protocol import NodeView
from tritonfleet.up.supervisor import Supervisor

log = logging.getLogger(__name__)

# A service's log (`<state>/logs/<name>.log`) past this is rolled over, once, while `up` runs:
# its output takes at most twice this on disk.
LOG_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class NodeSpec:
    node_id: str
    # Keys of [node] to set for this node only (its own model repository, say).
    overrides: dict[str, Any] = field(default_factory=dict)


def ensure_token(state_dir: Path) -> Path:
    """The development cluster token, generated once and readable by its owner only."""
    path = state_dir / "cluster_token"
    if not path.exists():
        secret_file(path, secrets.token_urlsafe(32))
    return path


def secret_file(path: Path, secret: str) -> Path:
    """A file readable by its owner only, holding `secret`: how a secret reaches the services
    started here, which see neither a flag nor an environment variable holding it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret)
    return path


class LocalCluster:
    """Starts the services in dependency order, waits until each is ready, stops them in reverse."""

    def __init__(
        self, config: FleetConfig, state_dir: Path, nodes: Sequence[NodeSpec], with_web: bool = False
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.node_specs = list(nodes)
        self.env = {**os.environ, **to_env(config)}
        # The gateway asks the scheduler this cluster runs, wherever its port was moved.
        self.env["TRITONFLEET_GATEWAY_SCHEDULER_URL"] = self.scheduler_url
        self.env["TRITONFLEET_WEB_GATEWAY_URL"] = self.gateway_url
        self.env["TRITONFLEET_WEB_TOKEN_MANAGER_URL"] = self.token_manager_url
        ledger_url = config.payments.ledger_url
        if ledger_url is not None:
            path = secret_file(state_dir / "ledger_url", ledger_url.get_secret_value())
            self.env["TRITONFLEET_PAYMENTS_LEDGER_URL_FILE"] = str(path.resolve())
        cluster = config.cluster
        if cluster.token is None and cluster.token_file is None:
            cluster = cluster.model_copy(update={"token_file": ensure_token(state_dir).resolve()})
            self.env["TRITONFLEET_CLUSTER_TOKEN_FILE"] = str(cluster.token_file)
        # The node lists of the health checker, the scheduler and the gateway are the cluster's.
        self.cluster_auth = {"Authorization": f"Bearer {cluster.read_token()}"}
        self.health = self._service("health-checker")
        self.scheduler = self._service("scheduler")
        self.gateway = self._service("gateway")
        self.nodes = {spec.node_id: self._node(spec) for spec in self.node_specs}
        paid = config.payments.enabled
        self.chain = self._service("chain") if paid and config.chain.dev else None
        self.token_manager = self._service("token-manager") if paid else None
        self.settler = self._service("settler") if paid else None
        self.web = self._service("web") if with_web else None
        # Restarted when it dies: a settler down only lets charges queue in the ledger.
        self.supervisor = Supervisor([self.settler] if self.settler is not None else [])

    @property
    def gateway_url(self) -> str:
        scheme = "http" if self.config.gateway.tls_cert_file is None else "https"
        return f"{scheme}://{self.config.gateway.host}:{self.config.gateway.port}"

    @cached_property
    def gateway_trust(self) -> ssl.SSLContext | bool:
        """What the launcher's checks of a TLS gateway trust: the very certificate it was given."""
        return trusting(self.config.gateway.tls_cert_file)

    @property
    def scheduler_url(self) -> str:
        return f"http://{self.config.scheduler.host}:{self.config.scheduler.port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.config.web.host}:{self.config.web.port}"

    @property
    def token_manager_url(self) -> str:
        return f"http://{self.config.token_manager.host}:{self.config.token_manager.port}"

    @property
    def health_url(self) -> str:
        return self.config.cluster.health_urls[0]

    def processes(self) -> list[ServiceProcess]:
        """In start order; stopped in reverse."""
        return [proc for tier in self._tiers() for proc in tier]

    def _tiers(self) -> list[list[ServiceProcess]]:
        """Groups started in this order (each needs the ones before) and stopped in reverse."""
        payments = [p for p in (self.token_manager, self.settler) if p is not None]
        chain = [self.chain] if self.chain is not None else []
        web = [self.web] if self.web is not None else []
        return [
            [self.health],
            chain,
            [self.scheduler, *payments],
            list(self.nodes.values()),
            [self.gateway, *web],
        ]

    def start(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        self.health.start()
        wait_http_ok(f"{self.health_url}/healthz", timeout_s, self.health)
        if self.chain is not None:
            log_from = _log_size(self.chain)
            self.chain.start()
            self._wait(
                lambda: self._chain_deployed(log_from), timeout_s, "the chain did not come up", self.chain
            )
        for proc in (self.scheduler, *self.nodes.values(), self.gateway):
            proc.start()
        for extra in (self.token_manager, self.settler, self.web):
            if extra is not None:
                extra.start()
        if self.token_manager is not None:
            wait_http_ok(f"{self.token_manager_url}/healthz", timeout_s, self.token_manager)
        wait_http_ok(f"{self.scheduler_url}/healthz", timeout_s, self.scheduler)
        wait_http_ok(f"{self.gateway_url}/healthz", timeout_s, self.gateway, self.gateway_trust)
        if self.web is not None:
            wait_http_ok(f"{self.web_url}/healthz", timeout_s, self.web)
        for node_id in self.nodes:
            self.wait_node(node_id, deadline - time.monotonic())
        self.wait_gateway_sees(set(self.nodes), deadline - time.monotonic())
        # A gateway with a remote scheduler routes by the scheduler service's view, watched apart.
        self._wait(
            lambda: self._schedulable(f"{self.scheduler_url}/v1/nodes") == set(self.nodes),
            deadline - time.monotonic(),
            f"the scheduler service did not see nodes {sorted(self.nodes)}",
            self.scheduler,
        )

    def wait_node(self, node_id: str, timeout_s: float) -> None:
        """Until the health checker lists the node healthy and ready."""
        self._wait(
            lambda: node_id in self._schedulable(f"{self.health_url}/v1/nodes"),
            timeout_s,
            f"node {node_id} did not become ready",
            self.nodes[node_id],
        )

    def wait_gateway_sees(self, node_ids: set[str], timeout_s: float) -> None:
        """Until the gateway routes to exactly these nodes, and its Envoy, if any, too."""
        self._wait(
            lambda: (
                self._schedulable(f"{self.gateway_url}/v1/nodes", self.gateway_trust, envoy=True) == node_ids
            ),
            timeout_s,
            f"the gateway did not see nodes {sorted(node_ids)}",
            self.gateway,
        )

    def stop(self) -> None:
        """Reverse order: the entry point first, so no new request reaches a stopping node;
        the nodes drain side by side."""
        for tier in reversed(self._tiers()):
            for proc in tier:
                proc.signal(signal.SIGTERM)
            for proc in tier:
                proc.wait_or_kill(timeout_s=self.config.node.drain_timeout_s + 10)

    def died(self) -> list[ServiceProcess]:
        """The services that exited, but for the supervised ones, which `tend` restarts."""
        return [
            proc
            for proc in self.processes()
            if proc.proc is not None and not proc.alive() and proc not in self.supervisor.processes
        ]

    def tend(self) -> list[ServiceProcess]:
        """Restart the supervised services that died, and bound every service's log; those
        restarted."""
        for proc in self.processes():
            bound_log(proc.log_path)
        return self.supervisor.tend()

    def tend_until_one_dies(self) -> ServiceProcess:
        """Tend the cluster (`tend`, twice a second) until a service that is not restarted dies;
        that one."""
        while not (dead := self.died()):
            self.tend()
            time.sleep(0.5)
        return dead[0]

    def _service(self, command: str) -> ServiceProcess:
        argv = [sys.executable, "-m", "tritonfleet", command]
        return ServiceProcess(command, argv, self.env, self.state_dir / "logs" / f"{command}.log")

    def _node(self, spec: NodeSpec) -> ServiceProcess:
        overrides = {"node_id": spec.node_id, "log_dir": str(self.state_dir / "logs"), **spec.overrides}
        env = dict(self.env)
        for key, value in overrides.items():
            assert key in NodeConfig.model_fields, key
            env[f"TRITONFLEET_NODE_{key.upper()}"] = str(value)
        argv = [sys.executable, "-m", "tritonfleet", "node"]
        return ServiceProcess(spec.node_id, argv, env, self.state_dir / "logs" / f"{spec.node_id}.log")

    def _chain_deployed(self, log_from: int) -> bool:
        """The chain command announced its contracts in its log past `log_from`: only then is
        the deployment file the one the services must read, and not one it is about to replace
        (it redeploys a vault of an older version)."""
        assert self.chain is not None
        try:
            with self.chain.log_path.open("rb") as log_file:
                log_file.seek(log_from)
                return f"chain {self.config.chain.chain_id} at ".encode() in log_file.read()
        except OSError:
            return False

    def _schedulable(self, url: str, verify: ssl.SSLContext | bool = True, envoy: bool = False) -> set[str]:
        """The schedulable nodes of a node list; with `envoy`, none until an Envoy in front of
        the gateway routes to those of them that serve a model."""
        try:
            answer = httpx.get(url, headers=self.cluster_auth, verify=verify, timeout=2.0).json()
            nodes = [NodeView.model_validate(node) for node in answer["nodes"]]
            routed = set(answer["envoy"]["routed"]) if envoy and "envoy" in answer else None
        except (httpx.HTTPError, ValueError, KeyError):
            return set()
        schedulable = {node.node_id for node in nodes if node.schedulable}
        if routed is not None and routed != {
            node.node_id for node in nodes if node.schedulable and node.models
        }:
            return set()
        return schedulable

    @staticmethod
    def _wait(done: Any, timeout_s: float, what: str, proc: ServiceProcess) -> None:
        deadline = time.monotonic() + max(timeout_s, 0)
        while not done():
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited; its log ends:\n{proc.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} within the time allowed; log of {proc.name}:\n{proc.tail()}")
            time.sleep(0.1)


def bound_log(path: Path, max_bytes: int = LOG_MAX_BYTES) -> bool:
    """A log past max_bytes copied to `<name>.log.1` (replacing the last) and emptied, while its
    service goes on writing: it appends (O_APPEND), so its next line starts the emptied file,
    where a renamed file would keep its lines. The few it writes between the copy and the
    truncation are lost. True when it was emptied."""
    try:
        if path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    try:
        shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    except OSError as exc:
        # A full disk, say: the bound matters more than the old lines.
        log.warning("cannot keep a log's old lines; emptying it", extra={"log": str(path), "error": str(exc)})
    try:
        os.truncate(path, 0)
    except OSError as exc:
        log.warning("cannot empty a log", extra={"log": str(path), "error": str(exc)})
        return False
    return True


def _log_size(proc: ServiceProcess) -> int:
    try:
        return proc.log_path.stat().st_size
    except OSError:
        return 0
