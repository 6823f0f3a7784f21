"""`tritonfleet netns`: a multi-host cluster in network namespaces until Ctrl-C; and
`python -m tritonfleet.netns fault|heal|hosts`, which inject faults into the running one.

The running cluster writes its hosts and node managers' pids to `.tritonfleet/netns/hosts.json`,
which the fault commands read; it removes the file, its namespaces and its bridge on the way out.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import FrameType

import httpx

from tritonfleet.config import FleetConfig
from tritonfleet.netns import faults
from tritonfleet.netns.cluster import NetnsCluster
from tritonfleet.netns.faults import Fault
from tritonfleet.netns.hosts import Host, HostNetwork, NetnsError, require_netns

STATE_DIR = Path(".tritonfleet") / "netns"
HOSTS_FILE = "hosts.json"
DEFAULT_NODES = 2
# Each node's repository: the demo model, and the fixture that is slow or hangs on request.
NODE_MODELS = {"simple": Path("simple"), "latency": Path("_bench") / "latency"}


def serve(config: FleetConfig) -> int:
    try:
        require_netns()
    except NetnsError as exc:
        print(f"tritonfleet netns: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    repositories = {
        f"node-{i}": node_repository(STATE_DIR / "repos" / f"node-{i}", config.node.model_repository)
        for i in range(1, DEFAULT_NODES + 1)
    }
    print(f"Starting a cluster in network namespaces; logs in {STATE_DIR / 'logs'}/ ...", flush=True)
    with HostNetwork() as network:
        code = run_until_interrupted(NetnsCluster(network, config, STATE_DIR, repositories))
    print("Stopped; namespaces and bridge removed.", flush=True)
    return code


def run_until_interrupted(cluster: NetnsCluster) -> int:
    try:
        cluster.start()
        write_hosts(cluster, STATE_DIR / HOSTS_FILE)
        print(banner(cluster), flush=True)
        dead = cluster.tend_until_one_dies()
        print(f"{dead.name} exited; its log ends:\n{dead.tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError, httpx.HTTPError, NetnsError) as exc:
        print(f"tritonfleet netns: {exc}", file=sys.stderr)
        return 1
    finally:
        print("Stopping ...", flush=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        (STATE_DIR / HOSTS_FILE).unlink(missing_ok=True)
        cluster.stop()


def node_repository(root: Path, models: Path) -> Path:
    """A fresh repository of links to NODE_MODELS under `models` (the checkout's `models/`)."""
    for name, source in NODE_MODELS.items():
        (root / name).unlink(missing_ok=True)
        root.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to((models / source).resolve(), target_is_directory=True)
    return root


def banner(cluster: NetnsCluster) -> str:
    gateway = cluster.config.gateway
    width = max(len(name) for name in cluster.hosts)
    hosts = "\n".join(
        f"  {name:<{width}}  {host.address:<15} namespace {host.netns}, link {host.veth}"
        for name, host in cluster.hosts.items()
    )
    return f"""
TritonFleet is up in network namespaces: {len(cluster.nodes)} nodes, data plane {gateway.data_plane}.

  gateway (KServe v2 HTTP)  {cluster.gateway_url}
  gateway (KServe v2 gRPC)  {gateway.host}:{gateway.grpc_port}
  this namespace            {cluster.network.address} on bridge {cluster.network.bridge}
{hosts}

Faults (from another shell, as root):
  python -m tritonfleet.netns fault node-2 partition|blackhole|pause
  python -m tritonfleet.netns fault node-2 degrade --delay-ms 200 --loss-pct 5
  python -m tritonfleet.netns heal node-2
Ctrl-C stops everything and removes the namespaces.
"""


def write_hosts(cluster: NetnsCluster, path: Path) -> None:
    managers = {node_id: proc.pid for node_id, proc in cluster.nodes.items()}
    hosts = {name: asdict(host) for name, host in cluster.hosts.items()}
    path.write_text(json.dumps({"hosts": hosts, "managers": managers}, indent=2))


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tritonfleet.netns`: faults on the cluster `tritonfleet netns` runs."""
    parser = argparse.ArgumentParser(prog="python -m tritonfleet.netns", description=main.__doc__)
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("hosts", help="List the hosts and their addresses.")
    fault = sub.add_parser("fault", help="Inject a fault into one host.")
    fault.add_argument("host")
    fault.add_argument("fault", choices=[kind.value for kind in Fault])
    fault.add_argument("--delay-ms", type=float, default=0.0, help="degrade: delay each way")
    fault.add_argument("--loss-pct", type=float, default=0.0, help="degrade: loss each way")
    heal = sub.add_parser("heal", help="Undo every fault of one host.")
    heal.add_argument("host")
    args = parser.parse_args(argv)
    try:
        state = json.loads((args.state_dir / HOSTS_FILE).read_text())
    except OSError as exc:
        print(f"no cluster is running ({exc}); start one with `tritonfleet netns`", file=sys.stderr)
        return 2
    hosts = {name: Host(**fields) for name, fields in state["hosts"].items()}
    if args.action == "hosts":
        for name, host in hosts.items():
            print(f"{name}\t{host.address}\t{host.netns}\t{host.veth}")
        return 0
    if args.host not in hosts:
        print(f"no host {args.host!r}; hosts: {', '.join(hosts)}", file=sys.stderr)
        return 2
    host, manager_pid = hosts[args.host], state["managers"].get(args.host)
    try:
        if args.action == "heal":
            faults.heal(host, manager_pid)
        else:
            inject(host, Fault(args.fault), manager_pid, args.delay_ms, args.loss_pct)
    except NetnsError as exc:
        print(f"python -m tritonfleet.netns: {exc}", file=sys.stderr)
        return 1
    return 0


def inject(host: Host, fault: Fault, manager_pid: int | None, delay_ms: float, loss_pct: float) -> None:
    if fault is Fault.PARTITION:
        faults.partition(host)
    elif fault is Fault.BLACKHOLE:
        faults.blackhole(host)
    elif fault is Fault.DEGRADE:
        faults.degrade(host, delay_ms, loss_pct)
    elif manager_pid is None:
        raise NetnsError(f"{host.name} is not a node: it has no tritonserver to pause")
    else:
        faults.pause(faults.triton_pid(manager_pid))
