"""A LocalCluster whose every service runs on a host of its own, in a network namespace.

The hosts are `health` (the health checker), `scheduler`, `gateway` and one per node. Each
service binds its host's bridge address and advertises it; the nodes' managers and Tritons
pick their ports inside their own namespace. Only the gateway talks to itself on loopback (its
Envoy to its Python service), as on any one machine. Payments are off.

Slow and hung models: a node serving `models/_bench/latency` answers after `service_time_ms`
per batch. A request's parameter `{"parameters": {"service_time_ms": 60000}}` makes that
request, and every one queued behind it on that node's one model instance, wait that long (a
hang, on whichever node the gateway picked). `throttle` makes a whole node slow (a throttled
GPU), with no model of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tritonfleet.config import FleetConfig
from tritonfleet.net import http_url
from tritonfleet.netns import faults
from tritonfleet.netns.hosts import Host, HostNetwork, in_netns
from tritonfleet.processes import ServiceProcess
from tritonfleet.up.cluster import LocalCluster, NodeSpec

# The host each service command of LocalCluster runs on.
SERVICE_HOSTS = {"health-checker": "health", "scheduler": "scheduler", "gateway": "gateway"}


def netns_config(base: FleetConfig, hosts: Mapping[str, Host]) -> FleetConfig:
    """`base` with every service bound to its host's address, and payments off."""
    health, scheduler, gateway = (hosts[name].address for name in SERVICE_HOSTS.values())
    return base.model_copy(
        update={
            "cluster": base.cluster.model_copy(update={"health_urls": [http_url(health, base.health.port)]}),
            "health": base.health.model_copy(update={"host": health}),
            "scheduler": base.scheduler.model_copy(update={"host": scheduler}),
            "gateway": base.gateway.model_copy(update={"host": gateway}),
            "payments": base.payments.model_copy(update={"enabled": False}),
        }
    )


class NetnsCluster(LocalCluster):
    """LocalCluster's services and start order, each service run through `ip netns exec` on
    its own host; plus the faults of each host.

    `repositories`: node id → that node's model repository.
    """

    def __init__(
        self, network: HostNetwork, base: FleetConfig, state_dir: Path, repositories: Mapping[str, Path]
    ) -> None:
        self.network = network
        self.hosts = {name: network.add(name) for name in (*SERVICE_HOSTS.values(), *repositories)}
        specs = [
            NodeSpec(node_id, {"host": self.hosts[node_id].address, "model_repository": str(repository)})
            for node_id, repository in repositories.items()
        ]
        super().__init__(netns_config(base, self.hosts), state_dir, specs)

    def _service(self, command: str) -> ServiceProcess:
        return self._on_host(super()._service(command), SERVICE_HOSTS[command])

    def _node(self, spec: NodeSpec) -> ServiceProcess:
        return self._on_host(super()._node(spec), spec.node_id)

    def _on_host(self, proc: ServiceProcess, host: str) -> ServiceProcess:
        proc.argv = in_netns(self.hosts[host].netns, proc.argv)
        return proc

    def partition(self, host: str) -> None:
        faults.partition(self.hosts[host])

    def blackhole(self, host: str) -> None:
        faults.blackhole(self.hosts[host])

    def degrade(self, host: str, delay_ms: float = 0.0, loss_pct: float = 0.0) -> None:
        faults.degrade(self.hosts[host], delay_ms, loss_pct)

    def triton_pid(self, node_id: str) -> int:
        return faults.triton_pid(self.nodes[node_id].pid)

    def pause(self, node_id: str) -> None:
        """SIGSTOP the node's `tritonserver`: a hung GPU (its manager goes on heartbeating)."""
        faults.pause(self.triton_pid(node_id))

    def resume(self, node_id: str) -> None:
        faults.resume(self.triton_pid(node_id))

    def throttle(self, node_id: str, running_ms: float, stopped_ms: float) -> faults.Throttle:
        """The node's `tritonserver` stopped `stopped_ms` of every `running_ms + stopped_ms`
        until the Throttle's `stop()`: a node that answers, but that many times slower."""
        return faults.Throttle(self.triton_pid(node_id), running_ms, stopped_ms)

    def heal(self, host: str) -> None:
        """Undo every fault of the host: its network, and a paused Triton on a node."""
        node = self.nodes.get(host)
        faults.heal(self.hosts[host], node.pid if node is not None and node.alive() else None)
