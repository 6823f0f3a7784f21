"""Hosts on one bridge: each a Linux network namespace with one veth and one address.

The bridge lives in this (root) namespace, which gets an address on it too, so that the test
process or a developer's shell reaches every host as another machine would. Names start with
`tf<pid>n<k>-` (the process that made them, its k-th network), short because interface names
are limited to 15 characters; a run that died without cleaning up leaves names whose pid is
gone, and the next network swept removes them.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

log = logging.getLogger(__name__)

# The longest interface name Linux takes (IFNAMSIZ less the terminating NUL).
MAX_IFNAME = 15
# The name of every host's own end of its veth, inside its namespace.
HOST_IFNAME = "eth0"
# Where the bridges' subnets are taken from, one /24 a network.
SUBNETS = ipaddress.IPv4Network("10.213.0.0/16")
# The names this module makes: the pid of the process that made them, then its network's number.
OURS = re.compile(r"^tf(\d+)n\d+-")

_networks = itertools.count()


class NetnsError(Exception):
    """Root of this package's errors.

    NetnsError
    ├── NetnsUnavailable: not root, or `ip`/`tc` missing: nothing can be built here
    ├── NetnsCommandFailed: an `ip` or `tc` command failed
    └── FaultUnsupported: this kernel cannot inject that fault (no netem, say)
    """


class NetnsUnavailable(NetnsError):
    pass


class NetnsCommandFailed(NetnsError):
    pass


class FaultUnsupported(NetnsError):
    pass


@dataclass(frozen=True)
class Host:
    """One host: its namespace, the root namespace's end of its veth (on the bridge), its address."""

    name: str
    netns: str
    veth: str
    address: str


def tool(name: str) -> str:
    """The path of `ip` or `tc`, or NetnsUnavailable saying how to get it."""
    path = shutil.which(name)
    if path is None:
        raise NetnsUnavailable(
            f"`{name}` is not on PATH: the network-namespace cluster needs iproute2 "
            "(apt-get install -y iproute2)"
        )
    return path


def require_netns() -> None:
    """NetnsUnavailable, with what is missing, unless namespaces can be made here."""
    if os.geteuid() != 0:
        raise NetnsUnavailable(
            "the network-namespace cluster needs root (it makes namespaces, veths and a bridge); "
            f"running as uid {os.geteuid()}"
        )
    tool("ip")
    tool("tc")


def run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """One `ip` or `tc` command (the first word is the tool's name); NetnsCommandFailed with
    its stderr when it fails and `check`."""
    command = [tool(argv[0]), *argv[1:]]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NetnsCommandFailed(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """argv run inside a namespace: `ip netns exec` execs it, so the pid is argv's own."""
    return [tool("ip"), "netns", "exec", netns, *argv]


class HostNetwork:
    """A bridge and the hosts on it; a context manager that removes all of it, and kills every
    process left in its namespaces, on the way out (exception or not)."""

    def __init__(self) -> None:
        self.prefix = f"tf{os.getpid()}n{next(_networks)}"
        self.bridge = f"{self.prefix}-br"
        self.hosts: dict[str, Host] = {}
        self.subnet = SUBNETS  # replaced by the bridge's own /24 in open()
        self.address = ""

    def __enter__(self) -> HostNetwork:
        require_netns()
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """The bridge, with this namespace's address on it (`.1` of a /24 no route uses)."""
        require_netns()
        sweep_leftovers()
        self.subnet = free_subnet(os.getpid())
        self.address = str(self.subnet.network_address + 1)
        run(["ip", "link", "add", self._ifname("br"), "type", "bridge"])
        # Bridged frames skip the host's iptables (a Docker host's FORWARD policy is DROP);
        # kernels without the per-bridge switch have no such rules to skip either.
        run(["ip", "link", "set", self.bridge, "type", "bridge", "nf_call_iptables", "0"], check=False)
        run(["ip", "addr", "add", f"{self.address}/{self.subnet.prefixlen}", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])

    def add(self, name: str) -> Host:
        """A new host: its namespace (loopback up: services talk to themselves on it), a veth
        whose far end is its `eth0`, and the next address of the subnet."""
        address = str(self.subnet.network_address + 2 + len(self.hosts))
        host = Host(name, f"{self.prefix}-{name}", self._ifname(str(len(self.hosts))), address)
        self.hosts[name] = host
        run(["ip", "netns", "add", host.netns])
        run(["ip", "-n", host.netns, "link", "set", "lo", "up"])
        run(
            ["ip", "link", "add", host.veth, "type", "veth", "peer", "name", HOST_IFNAME, "netns", host.netns]
        )
        run(["ip", "link", "set", host.veth, "master", self.bridge])
        run(["ip", "link", "set", host.veth, "up"])
        run(["ip", "-n", host.netns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", HOST_IFNAME])
        run(["ip", "-n", host.netns, "link", "set", HOST_IFNAME, "up"])
        return host

    def close(self) -> None:
        """Every process in the namespaces killed, then the namespaces (their veths go with
        them) and the bridge removed; failures logged, never raised."""
        try:
            for host in self.hosts.values():
                kill_processes(host.netns)
                # The veth first: deleting one end deletes the pair at once, where a namespace's
                # own links go only when the kernel gets round to freeing it.
                remove_link(host.veth)
                remove_netns(host.netns)
            remove_link(self.bridge)
        except NetnsError:
            log.warning("cannot remove a network", exc_info=True, extra={"prefix": self.prefix})
        self.hosts.clear()

    def _ifname(self, suffix: str) -> str:
        name = f"{self.prefix}-{suffix}"
        if len(name) > MAX_IFNAME:
            raise NetnsError(f"interface name {name!r} is over {MAX_IFNAME} characters")
        return name


def free_subnet(seed: int) -> ipaddress.IPv4Network:
    """A /24 of SUBNETS that no route of this namespace overlaps; where the search starts
    depends on `seed`, so that runs side by side rarely try the same one first."""
    used = []
    for route in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]"):
        dst = route.get("dst", "default")
        if dst != "default":
            used.append(ipaddress.ip_network(dst, strict=False))
    candidates = list(SUBNETS.subnets(new_prefix=24))
    for i in range(len(candidates)):
        subnet = candidates[(seed + i) % len(candidates)]
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise NetnsError(f"no free /24 left in {SUBNETS}")


def netns_pids(netns: str) -> list[int]:
    done = run(["ip", "netns", "pids", netns], check=False)
    return [int(pid) for pid in done.stdout.split()]


def kill_processes(netns: str) -> None:
    """SIGKILL what still runs in a namespace: the services were stopped before; the backstop."""
    for pid in netns_pids(netns):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_netns(netns: str) -> None:
    done = run(["ip", "netns", "del", netns], check=False)
    if done.returncode != 0 and netns in list_netns():
        log.warning("cannot remove a namespace", extra={"netns": netns, "error": done.stderr.strip()})


def remove_link(name: str) -> None:
    if name not in list_links():
        return
    done = run(["ip", "link", "del", name], check=False)
    if done.returncode != 0:
        log.warning("cannot remove a link", extra={"link": name, "error": done.stderr.strip()})


def list_netns() -> list[str]:
    return [entry["name"] for entry in json.loads(run(["ip", "-j", "netns", "list"]).stdout or "[]")]


def list_links() -> list[str]:
    return [entry["ifname"] for entry in json.loads(run(["ip", "-j", "link", "show"]).stdout or "[]")]


def ours(names: Sequence[str]) -> list[str]:
    """The names of these that this module made, in any run."""
    return [name for name in names if OURS.match(name)]


def sweep_leftovers() -> list[str]:
    """Remove the namespaces and links of runs whose process is gone; the names removed."""
    removed = []
    dead_netns = [netns for netns in list_netns() if _dead_run(netns)]
    for netns in dead_netns:
        kill_processes(netns)
    for link in list_links():
        if _dead_run(link):
            remove_link(link)
            removed.append(link)
    for netns in dead_netns:
        remove_netns(netns)
        removed.append(netns)
    if removed:
        log.warning("removed what dead runs left", extra={"removed": removed})
    return removed


def _dead_run(name: str) -> bool:
    match = OURS.match(name)
    if match is None:
        return False
    try:
        os.kill(int(match[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False
