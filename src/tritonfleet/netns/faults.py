"""Faults of one host, and their undoing.

Network faults act on both ends of the host's veth, so that they hold in both directions:

- `partition`: the link down (`ip link set <veth> down`); the bridge drops the host's frames
  and it loses carrier. Nothing answers: no RST, no ICMP (until neighbour resolution gives up,
  when new connections from the others fail with "no route to host").
- `blackhole`: the link stays up but every packet either way is dropped, ARP included, by
  Linux's `blackhole` qdisc. Chosen over `netem loss 100%` and nftables because it is built
  into kernels that have neither (this project's CI VMs have no netem module, and nftables
  needs a package): connections hang, as to a machine that froze.
- `degrade`: `tc netem` delay and loss, each way; FaultUnsupported where the kernel has no
  netem (CONFIG_NET_SCH_NETEM).
- `pause`/`resume`: SIGSTOP/SIGCONT of a node's `tritonserver` (a hung GPU: the sockets stay
  open, the kernel still completes TCP handshakes, nothing answers).
- `Throttle`: the same, in a duty cycle (stopped most of the time): a node that still answers,
  many times slower than its peers, as a throttled GPU does, on kernels without netem too.

A slow or hung model needs no fault here: `models/_bench/latency` sleeps `service_time_ms`
per batch, from its config or from a request's parameter of that name (see cluster.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

from tritonfleet.netns.hosts import HOST_IFNAME, FaultUnsupported, Host, NetnsError, run

TRITON_COMMAND = "tritonserver"


class Fault(StrEnum):
    PARTITION = "partition"
    BLACKHOLE = "blackhole"
    DEGRADE = "degrade"
    PAUSE = "pause"


def partition(host: Host) -> None:
    run(["ip", "link", "set", host.veth, "down"])


def blackhole(host: Host) -> None:
    _qdisc(host, ["blackhole"])


def degrade(host: Host, delay_ms: float = 0.0, loss_pct: float = 0.0) -> None:
    """Every packet either way delayed `delay_ms` (the round trip grows by twice that) and lost
    with probability `loss_pct` percent."""
    try:
        _qdisc(host, ["netem", "delay", f"{delay_ms}ms", "loss", f"{loss_pct}%"])
    except NetnsError as exc:
        if "unknown" in str(exc).lower():
            raise FaultUnsupported(
                "this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM), which latency and loss "
                "need; partition, blackhole and pause work without it"
            ) from exc
        raise


def heal_network(host: Host) -> None:
    """Undo partition, blackhole and degrade, whichever are in force (none is fine)."""
    run(["ip", "link", "set", host.veth, "up"])
    run(["tc", "qdisc", "del", "dev", host.veth, "root"], check=False)
    run(["tc", "-n", host.netns, "qdisc", "del", "dev", HOST_IFNAME, "root"], check=False)


def heal(host: Host, manager_pid: int | None = None) -> None:
    """Undo every fault of a host: its network, and, on a node (its manager's pid given), a
    paused `tritonserver`."""
    heal_network(host)
    if manager_pid is not None:
        resume(triton_pid(manager_pid))


def _qdisc(host: Host, qdisc: list[str]) -> None:
    # The root namespace's end shapes what reaches the host; the host's own end what it sends.
    run(["tc", "qdisc", "replace", "dev", host.veth, "root", *qdisc])
    run(["tc", "-n", host.netns, "qdisc", "replace", "dev", HOST_IFNAME, "root", *qdisc])


def triton_pid(manager_pid: int) -> int:
    """The `tritonserver` a node manager runs: among its descendants (the manager starts a
    guard, whose child it is)."""
    for pid in descendants(manager_pid):
        if command_name(pid) == TRITON_COMMAND:
            return pid
    raise NetnsError(f"no {TRITON_COMMAND} process under the manager {manager_pid}")


def pause(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)


def resume(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


class Throttle:
    """Stops `pid` for `stopped_ms` of every `running_ms + stopped_ms`, from a thread, until `stop`."""

    def __init__(self, pid: int, running_ms: float, stopped_ms: float) -> None:
        self.pid = pid
        self.running_s = running_ms / 1000
        self.stopped_s = stopped_ms / 1000
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._cycle, name=f"throttle {pid}", daemon=True)
        self._thread.start()

    def _cycle(self) -> None:
        try:
            while not self._stopping.is_set():
                pause(self.pid)
                self._stopping.wait(self.stopped_s)
                resume(self.pid)
                self._stopping.wait(self.running_s)
        except ProcessLookupError:
            return  # the process ended: nothing left to slow down

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        # The cycle ends running; once more in case it was between its pause and the check.
        with contextlib.suppress(ProcessLookupError):
            resume(self.pid)


def process_state(pid: int) -> str:
    """The kernel's one-letter state: `T` stopped, `S` sleeping, `R` running, ..."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name, in parentheses, may itself hold spaces and parentheses.
    return stat.rpartition(")")[2].split()[0]


def descendants(pid: int) -> Iterator[int]:
    """Children first, then theirs; any thread may be a child's parent."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return
    for task in tasks:
        try:
            children = [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            yield child
            yield from descendants(child)


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
