"""Faults that fleets really have, on both data planes: overload, many connections, and (on the
multi-host cluster in network namespaces) hung, slow, partitioned and killed nodes.

    .venv/bin/python -m bench.faults [--only overload,connections,faults] [--data-plane python,envoy]
                                     [--smoke] [--output FILE]

**overload**: two nodes of the latency fixture (`--service-time-ms`, one instance each, no
batching: a capacity of 2 * 1000 / service_time_ms requests/s) are offered three times their
capacity, open loop, for `--overload-s`. Clients give up after `--slo-s`; goodput is the
answers 200 within it, per second. Once with the gateway's bounds sized to the nodes
(`max_in_flight_per_node` = 2 * instances, a queue of half an SLO of capacity), once unbounded
(the gateway before issue 16): a queue that only grows serves every request after its client
left. Reported: goodput against capacity, the refused (503 with Retry-After), the timed out,
the p99 of the answers, and the gateway's peak resident memory (Envoy's too, on its plane).

**connections**: `--connections` client connections opened to the gateway and held, each
sending one request while all are open, then one more round; errors of any kind are counted,
and the gateway's resident memory with all of them open.

**faults**: a cluster of three nodes in network namespaces (`tritonfleet.netns`: each node, the
health checker, the scheduler and the gateway a host of its own on a bridge), an open-loop load
of `--rate` requests/s of the latency fixture from the root namespace; one fault after another
on node 2, each `--fault-s` long after `--steady-s` of steady load, then healed:
`sigkill` (the manager and its Triton killed; restarted), `pause` (tritonserver SIGSTOPped: a hung
GPU), `blackhole` (every packet to and from the host dropped, no RST), `partition` (its link
down), `throttle` (tritonserver stopped 90% of the time: a node ten times slower, still
answering). Reported per fault: the failed requests (any answer but 200, or none: all could
have been served by the other nodes), the time from the fault to the last request it caught in
its first burst (a request slower than three times the steady p99, plus 20 ms: the node is out
of rotation after it; later single ones are the half-open tries at the end of each back-off),
those caught in all, and the p99 during the fault against the steady one. `tc netem` (latency,
loss) runs where the kernel has it (`--netem`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.failover import Sample, open_loop, percentile
from bench.fixture import (
    LATENCY_BODY,
    LatencyModel,
    infer_path,
    latency_cluster,
    policy_gateway,
    start,
    write_model,
)
from bench.overhead import ENVOY_PLANE, Target
from bench.scenario import RESULTS, scenario_main
from tests.e2e.cluster import fleet_config
from tests.e2e.connections import held_connections
from tests.e2e.test_generate import peak_memory, reset_peak_memory
from tritonfleet.netns.cluster import NetnsCluster
from tritonfleet.netns.hosts import HostNetwork
from tritonfleet.up.cluster import LocalCluster

UNBOUNDED = str(1_000_000)


def plane_env(plane: str, **gateway: Any) -> dict[str, str]:
    env = dict(ENVOY_PLANE) if plane == "envoy" else {"TRITONFLEET_GATEWAY_DATA_PLANE": "python"}
    env.update({f"TRITONFLEET_GATEWAY_{key.upper()}": str(value) for key, value in gateway.items()})
    return env


class Memory:
    """The peak resident memory of a gateway's processes from now on."""

    def __init__(self, target: Target) -> None:
        self.pids = list(target.pids.values())
        self.before = {pid: reset_peak_memory(pid) for pid in self.pids}

    def peak_mib(self) -> float:
        return round(sum(peak_memory(pid) for pid in self.pids) / 2**20, 1)

    def grown_mib(self) -> float:
        return round(sum(peak_memory(pid) - self.before[pid] for pid in self.pids) / 2**20, 1)


async def offered(url: str, rate: float, duration_s: float, timeout_s: float) -> list[Sample]:
    """Open loop: a request every 1/rate s for duration_s, each given up after timeout_s."""
    loop = asyncio.get_running_loop()
    samples: list[Sample] = []
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    headers = {"Content-Type": "application/json"}

    async def one(session: aiohttp.ClientSession, t0: float) -> None:
        begin = loop.time()
        retry_after = ""
        try:
            async with session.post(url, data=LATENCY_BODY, headers=headers) as answer:
                await answer.read()
                status, retry_after = answer.status, answer.headers.get("Retry-After", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, retry_after = 0, repr(exc)[:80]
        samples.append(Sample(begin - t0, (loop.time() - begin) * 1000, status, "", retry_after))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        t0 = due = loop.time()
        tasks = set()
        while loop.time() - t0 < duration_s:
            task = asyncio.create_task(one(session, t0))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            due += 1 / rate
            await asyncio.sleep(max(0.0, due - loop.time()))
        await asyncio.gather(*tasks)
    return samples


def overload_figures(
    samples: list[Sample], duration_s: float, slo_s: float, capacity: float
) -> dict[str, Any]:
    # Goodput is counted by when answers come, past the first quarter of the run (the queue
    # filling): the rate the nodes' work reaches clients in time, once overloaded.
    begin_s = duration_s / 4
    good = [
        s
        for s in samples
        if s.status == 200
        and s.latency_ms <= slo_s * 1000
        and begin_s <= s.sent_s + s.latency_ms / 1000 < duration_s
    ]
    goodput = len(good) / (duration_s - begin_s)
    refused = [s for s in samples if s.status == 503]
    return {
        "offered_rps": round(len(samples) / duration_s, 1),
        "capacity_rps": capacity,
        "goodput_rps": round(goodput, 1),
        "goodput_of_capacity": round(goodput / capacity, 3),
        "refused_503": len(refused),
        "refused_with_retry_after": sum(bool(s.error) for s in refused),
        "refused_p99_ms": percentile([s.latency_ms for s in refused], 99),
        "timed_out": sum(s.status == 0 for s in samples),
        "other_errors": sum(s.status not in (0, 200, 503) for s in samples),
        "served_p50_ms": percentile([s.latency_ms for s in samples if s.status == 200], 50),
        "served_p99_ms": percentile([s.latency_ms for s in samples if s.status == 200], 99),
    }


def drained(url: str, quick_s: float, timeout_s: float = 300.0) -> None:
    """Until one request at a time is answered within `quick_s` three times in a row."""
    deadline = time.monotonic() + timeout_s
    quick = 0
    with httpx.Client(timeout=timeout_s) as client:
        while quick < 3:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the nodes did not drain within {timeout_s:g} s")
            began = time.monotonic()
            answer = client.post(url, content=LATENCY_BODY, headers={"Content-Type": "application/json"})
            quick = quick + 1 if answer.status_code == 200 and time.monotonic() - began < quick_s else 0


def overload(fleet: LocalCluster, plane: str, args: argparse.Namespace) -> dict[str, Any]:
    capacity = 2 * 1000 / args.service_time_ms
    bounded = {
        "max_in_flight_per_node": 2,
        "max_queued": max(1, round(capacity * args.slo_s / 2)),
        "request_timeout_s": args.slo_s,
    }
    unbounded = {"max_in_flight": UNBOUNDED, "max_in_flight_per_node": UNBOUNDED, "max_queued": UNBOUNDED}
    runs: dict[str, Any] = {}
    for name, limits in (("bounded", bounded), ("unbounded", unbounded)):
        env = plane_env(plane, **limits)
        with policy_gateway(fleet, "round_robin", name=f"overload_{plane}_{name}", env=env) as gateway:
            memory = Memory(gateway)
            rate = 3 * capacity
            print(f"  [{plane} {name}] {rate:g} requests/s for {args.overload_s:g} s", flush=True)
            samples = asyncio.run(offered(gateway.url + infer_path(), rate, args.overload_s, args.slo_s))
            figures = overload_figures(samples, args.overload_s, args.slo_s, capacity)
            figures["limits"] = limits
            figures["gateway_peak_rss_mib"] = memory.peak_mib()
            figures["gateway_rss_grown_mib"] = memory.grown_mib()
            # What the run left queued at the nodes (all of it, unbounded: clients left, Triton
            # serves on) must drain before the next run, or that run measures the backlog.
            drained(gateway.url + infer_path(), 4 * args.service_time_ms / 1000)
        print(f"    {figures}", flush=True)
        runs[name] = figures
    return runs


def connections(fleet: LocalCluster, plane: str, args: argparse.Namespace) -> dict[str, Any]:
    with policy_gateway(fleet, "round_robin", name=f"connections_{plane}", env=plane_env(plane)) as gateway:
        memory = Memory(gateway)
        host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
        print(f"  [{plane}] {args.connections} connections held", flush=True)
        figures = asyncio.run(
            held_connections(
                host, int(port), args.connections, infer_path("fast"), LATENCY_BODY, concurrency=256
            )
        )
        figures["gateway_peak_rss_mib"] = memory.peak_mib()
        figures["gateway_rss_grown_mib"] = memory.grown_mib()
    print(f"    {figures}", flush=True)
    return figures


# The kill last: a restarted node's first answers are slow (its model warming up), which raises
# the attempt timeout for some seconds and would weigh on the fault after it.
FAULTS = ("pause", "blackhole", "partition", "throttle", "sigkill")
VICTIM = "node-2"


def inject(fleet: NetnsCluster, fault: str) -> Callable[[], None]:
    """Start `fault` on the victim; the function that heals it."""
    if fault == "sigkill":
        fleet.nodes[VICTIM].kill()
        return fleet.nodes[VICTIM].start
    if fault == "throttle":
        return fleet.throttle(VICTIM, running_ms=5, stopped_ms=45).stop
    if fault == "netem":
        fleet.degrade(VICTIM, delay_ms=50, loss_pct=1)
    else:
        getattr(fleet, fault)(VICTIM)
    return lambda: fleet.heal(VICTIM)


def fault_figures(samples: list[Sample], fault_s: float, healed_s: float) -> dict[str, Any]:
    # Steady: past the first third of the steady load (connections, the model warming up).
    steady = [s.latency_ms for s in samples if fault_s / 3 <= s.sent_s < fault_s and s.status == 200]
    steady_p99 = percentile(steady, 99) or 0.0
    caught_ms = 3 * steady_p99 + 20
    during = [s for s in samples if fault_s <= s.sent_s < healed_s]
    caught = [s.sent_s for s in during if s.latency_ms > caught_ms or s.status != 200]
    burst_end = None
    for earlier, later in itertools.pairwise([fault_s, *caught]):
        if later - earlier > 0.5:
            break
        burst_end = later
    failures = [s for s in samples if s.status != 200]
    return {
        "requests": len(samples),
        "failed": len(failures),
        "failed_examples": [asdict(s) for s in failures[:3]],
        "out_of_rotation_s": None if burst_end is None else round(burst_end - fault_s, 3),
        "caught": len(caught),
        "steady_p99_ms": steady_p99,
        "fault_p99_ms": percentile([s.latency_ms for s in during if s.status == 200], 99),
        "fault_max_ms": round(max((s.latency_ms for s in during), default=0.0), 1),
    }


async def one_fault(fleet: NetnsCluster, fault: str, args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    samples: list[Sample] = []
    stop = asyncio.Event()
    t0 = loop.time()
    load = asyncio.create_task(open_loop(fleet.gateway_url + infer_path(), args.rate, t0, stop, samples))
    try:
        await asyncio.sleep(args.steady_s)
        fault_s = loop.time() - t0
        # On this thread, not a worker's: a process started from a thread gets its parent-death
        # signal when that thread ends (processes.dying_with_parent), as the executor's do.
        heal = inject(fleet, fault)
        await asyncio.sleep(args.fault_s)
        healed_s = loop.time() - t0
        heal()
        # Until the victim serves again (a killed node restarts its Triton), then a little more.
        deadline = loop.time() + 120
        while not any(s.node == VICTIM and s.status == 200 and s.sent_s > healed_s for s in samples):
            if loop.time() > deadline:
                raise RuntimeError(f"{VICTIM} did not serve again within 120 s of the {fault} healed")
            await asyncio.sleep(0.1)
        await asyncio.sleep(args.after_s)
    finally:
        stop.set()
        await load
    figures = fault_figures(samples, fault_s, healed_s)
    print(f"    {fault}: {figures}", flush=True)
    return figures


def faults(tmp: Path, plane: str, args: argparse.Namespace) -> dict[str, Any]:
    model = LatencyModel("latency", args.fault_service_time_ms, instances=2)
    repositories = {}
    for node_id in ("node-1", VICTIM, "node-3"):
        repositories[node_id] = tmp / plane / "repos" / node_id
        write_model(repositories[node_id], model)
    with HostNetwork() as network, contextlib.ExitStack() as stack:
        base = fleet_config(tmp / plane, gateway={"data_plane": plane, "envoy_workers": 1})
        fleet = NetnsCluster(network, base, tmp / plane / "state", repositories)
        start(fleet, stack)
        print(f"  [{plane}] {args.rate:g} requests/s open loop; faults on {VICTIM}", flush=True)
        kinds = [*args.faults.split(","), *(["netem"] if args.netem else [])]
        return {fault: asyncio.run(one_fault(fleet, fault, args)) for fault in kinds}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", default="overload,connections,faults", help="parts to run")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s of the faults' load")
    parser.add_argument("--fault-service-time-ms", type=float, default=5.0)
    # Long enough for the attempt timeouts to have left the cluster's cold start behind (Envoy
    # follows the largest p99 of the last five seconds).
    parser.add_argument("--steady-s", type=float, default=6.0)
    parser.add_argument("--fault-s", type=float, default=4.0)
    parser.add_argument("--after-s", type=float, default=1.0)
    parser.add_argument("--netem", action="store_true", help="also latency and loss (tc netem)")
    parser.add_argument("--faults", default=",".join(FAULTS), help="which faults, in this order")
    parser.add_argument("--data-plane", default="python,envoy")
    parser.add_argument("--service-time-ms", type=float, default=20.0)
    parser.add_argument("--overload-s", type=float, default=10.0)
    parser.add_argument("--slo-s", type=float, default=2.0, help="clients give up after this")
    parser.add_argument("--connections", type=int, default=10_000)


def run(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    if args.smoke:
        args.overload_s, args.connections, args.steady_s, args.fault_s = 2.0, 500, 1.5, 2.0
    parts = set(args.only.split(","))
    planes = args.data_plane.split(",")
    results: dict[str, Any] = {
        "settings": {
            "service_time_ms": args.service_time_ms,
            "overload_s": args.overload_s,
            "slo_s": args.slo_s,
            "connections": args.connections,
            "rate_rps": args.rate,
            "fault_service_time_ms": args.fault_service_time_ms,
            "steady_s": args.steady_s,
            "fault_s": args.fault_s,
            "data_planes": planes,
        }
    }
    if "faults" in parts:
        results["faults"] = {plane: faults(tmp, plane, args) for plane in planes}
    if not parts & {"overload", "connections"}:
        return results
    models = [LatencyModel("latency", args.service_time_ms), LatencyModel("fast", 0.0, instances=2)]
    fleet = latency_cluster(tmp, {"node-1": models, "node-2": models})
    start(fleet, stack)
    if "overload" in parts:
        results["overload"] = {plane: overload(fleet, plane, args) for plane in planes}
    if "connections" in parts:
        results["connections"] = {plane: connections(fleet, plane, args) for plane in planes}
    return results


def main(argv: list[str] | None = None) -> int:
    return scenario_main(__doc__ or "", RESULTS / "faults.json", add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
