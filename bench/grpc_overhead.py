"""Gateway overhead over gRPC: Triton's own gRPC port versus the gateway's, same load generator.

    .venv/bin/python -m bench.grpc_overhead [--duration-s 5] [--rounds 3] [--output FILE]

One Triton node serving `simple`, one gateway in front of it (payments off: this measures what
routing costs). The load generator is `tritonclient.grpc.aio`, in this process, with N tasks
each sending `ModelInfer` back to back on one client (one HTTP/2 connection), the inputs built
once: closed-loop at 1 and 4 tasks (p50/p99 latency) and 16 tasks (requests per second).
The gateway runs twice: `gateway`, the Python data plane, and `gateway_envoy`, Envoy in front
of the Python gateway (one worker; its CPU counted with the gateway's), which sends `ModelInfer`
straight to Triton on the model a Lua filter reads from the message.
Another target, `bare_proxy`, is a grpc.aio proxy with no logic at all (this module run with
`--bare-proxy PORT UPSTREAM`, on uvloop as the gateway): the floor of any Python gRPC proxy, to
tell what grpcio itself costs from what the gateway adds. Rounds interleave the targets so that
drift of the machine hits them alike; the summary shows each figure's median over rounds, and
the ratios to direct. Everything runs on
loopback on this machine, the load generator included: the gateway competes with it and with
Triton for the same cores, which is part of its overhead. The gateway's CPU time per request
(its process, all threads) is the steadiest figure on a shared machine.

Results go to `bench/results/grpc_overhead.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import tritonclient.grpc.aio as grpcclient
import uvloop
from tritonclient.utils import InferenceServerException

from bench.fixture import python_data_plane
from bench.overhead import ENVOY_PLANE, gateway_process
from bench.scenario import RESULTS, scenario_main
from tests.e2e.cluster import cluster
from tritonfleet.gateway.grpc.channels import SERVICE
from tritonfleet.net import free_port
from tritonfleet.processes import ServiceProcess
from tritonfleet.up.cluster import LocalCluster

# The processes a target adds to the request path; none for Triton itself.
Pids = tuple[int, ...]
# (name, concurrent tasks): two closed-loop latency loads, then saturation.
LOADS = (("c1", 1), ("c4", 4), ("c16", 16))
WARMUP_S = 1.0


@dataclass(frozen=True)
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    # The gateway's own CPU per request; None for direct.
    cpu_us_per_request: float | None


def simple_inputs() -> list[grpcclient.InferInput]:
    inputs = [grpcclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
    inputs[1].set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
    return inputs


@dataclass(frozen=True)
class Drove:
    latencies_s: list[float]
    errors: int
    elapsed_s: float
    cpu_s: float | None


async def drive(address: str, tasks: int, duration_s: float, pids: Pids) -> Drove:
    """Warm up, then load the target for `duration_s`; the CPU time of `pids` (the target's
    processes) is read around that."""
    client = grpcclient.InferenceServerClient(address)
    inputs = simple_inputs()
    latencies: list[float] = []
    errors = 0

    async def worker(stop_at: float) -> None:
        nonlocal errors
        while (started := time.perf_counter()) < stop_at:
            try:
                await client.infer("simple", inputs)
            except InferenceServerException:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    try:
        await asyncio.gather(*(worker(time.perf_counter() + WARMUP_S) for _ in range(tasks)))
        latencies.clear()
        errors = 0
        cpu_before = sum(map(cpu_s, pids))
        began = time.perf_counter()
        await asyncio.gather(*(worker(began + duration_s) for _ in range(tasks)))
        elapsed_s = time.perf_counter() - began
        cpu_used = sum(map(cpu_s, pids)) - cpu_before if pids else None
        return Drove(latencies, errors, elapsed_s, cpu_used)
    finally:
        await client.close()


def cpu_s(pid: int) -> float:
    """User and system time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_once(address: str, tasks: int, duration_s: float, pids: Pids) -> Run:
    drove = uvloop.run(drive(address, tasks, duration_s, pids))
    ordered = sorted(drove.latencies_s) or [float("nan")]
    count = len(drove.latencies_s)
    return Run(
        rps=round(count / drove.elapsed_s, 1),
        p50_ms=round(ordered[len(ordered) // 2] * 1000, 3),
        p99_ms=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
        errors=drove.errors,
        cpu_us_per_request=round(drove.cpu_s / count * 1e6, 1) if drove.cpu_s is not None and count else None,
    )


def measure(targets: dict[str, tuple[str, Pids]], duration_s: float, rounds: int) -> dict[str, Any]:
    runs: dict[str, dict[str, list[Run]]] = {name: {load: [] for load, _ in LOADS} for name in targets}
    for round_number in range(1, rounds + 1):
        for load, tasks in LOADS:
            for name, (address, pids) in targets.items():
                run = measure_once(address, tasks, duration_s, pids)
                runs[name][load].append(run)
                print(f"round {round_number} {load:>4} {name:>13}: {run.rps:8.1f} rps  p50 {run.p50_ms} ms")
    return runs


def median(runs: list[Run], field: str) -> float | None:
    values = [getattr(run, field) for run in runs if getattr(run, field) is not None]
    return round(statistics.median(values), 3) if values else None


def summarize(runs: dict[str, dict[str, list[Run]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        name: {
            load: {field: median(rs, field) for field in Run.__dataclass_fields__}
            for load, rs in by_load.items()
        }
        for name, by_load in runs.items()
    }
    ratios: dict[str, dict[str, Any]] = {}
    for name in summary:
        if name == "direct":
            continue
        for load, _ in LOADS:
            direct, proxied = summary["direct"][load], summary[name][load]
            ratios.setdefault(name, {})[load] = {
                "rps_over_direct": round(proxied["rps"] / direct["rps"], 3),
                "p50_added_ms": round(proxied["p50_ms"] - direct["p50_ms"], 3),
                "p99_added_ms": round(proxied["p99_ms"] - direct["p99_ms"], 3),
            }
    return {"targets": summary, "ratios": ratios}


def table(summary: dict[str, Any]) -> str:
    header = ("load", "target", "rps", "p50 ms", "p99 ms", "cpu us/req", "x direct")
    widths = (5, 13, 9, 8, 8, 10, 9)
    lines = [" ".join(f"{title:>{width}}" for title, width in zip(header, widths, strict=True))]
    for load, _ in LOADS:
        for name, by_load in summary["targets"].items():
            row = by_load[load]
            cpu = row["cpu_us_per_request"]
            ratio = summary["ratios"].get(name, {}).get(load, {}).get("rps_over_direct", 1.0)
            lines.append(
                f"{load:>5} {name:>13} {row['rps']:9.1f} {row['p50_ms']:8.3f} {row['p99_ms']:8.3f} "
                f"{'' if cpu is None else f'{cpu:.0f}':>10} {ratio:9.3f}"
            )
    return "\n".join(lines)


def triton_grpc_address(fleet: LocalCluster) -> str:
    [node] = httpx.get(f"{fleet.health_url}/v1/nodes", headers=fleet.cluster_auth, timeout=5.0).json()[
        "nodes"
    ]
    return str(node["triton_grpc_url"]).removeprefix("grpc://")


def run(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    fleet = cluster(tmp, {"node-1": ["simple"]}, **python_data_plane({"payments": {"enabled": False}}))
    stack.callback(fleet.stop)
    print("starting one Triton node, health checker, scheduler and gateway ...", flush=True)
    fleet.start()
    gateway = f"{fleet.config.gateway.host}:{fleet.config.gateway.grpc_port}"
    direct = triton_grpc_address(fleet)
    bare = stack.enter_context(bare_proxy(direct, fleet.state_dir / "logs"))
    # Envoy's data plane, one worker (its CPU counted with the gateway's): gRPC's fast path.
    envoy = stack.enter_context(gateway_process(fleet, "gateway_envoy", ENVOY_PLANE))
    targets: dict[str, tuple[str, Pids]] = {
        "direct": (direct, ()),
        "gateway": (gateway, (fleet.gateway.pid,)),
        "gateway_envoy": (f"127.0.0.1:{envoy.grpc_port}", tuple(envoy.pids.values())),
        "bare_proxy": (bare.address, (bare.pid,)),
    }
    print(
        f"measuring {', '.join(targets)}: {args.rounds} rounds of {args.duration_s:g} s per load", flush=True
    )
    runs = measure(targets, args.duration_s, args.rounds)
    summary = summarize(runs)
    print()
    print(table(summary))
    return {
        "settings": {
            "duration_s": args.duration_s,
            "warmup_s": WARMUP_S,
            "rounds": args.rounds,
            "loads": [{"name": name, "tasks": tasks} for name, tasks in LOADS],
            "model": "simple",
            "payments": False,
        },
        "summary": summary,
        "runs": {
            name: {load: [asdict(r) for r in rs] for load, rs in by_load.items()}
            for name, by_load in runs.items()
        },
    }


@dataclass(frozen=True)
class Proxy:
    address: str
    pid: int


@contextlib.contextmanager
def bare_proxy(upstream: str, log_dir: Path) -> Iterator[Proxy]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.grpc_overhead", "--bare-proxy", str(port), upstream]
    proc = ServiceProcess("bare_grpc_proxy", argv, dict(os.environ), log_dir / "bare_grpc_proxy.log")
    try:
        proc.start()
        address = f"127.0.0.1:{port}"
        uvloop.run(wait_serving(address, proc))
        yield Proxy(address, proc.pid)
    finally:
        proc.stop(timeout_s=15.0)


async def wait_serving(address: str, proc: ServiceProcess, timeout_s: float = 30.0) -> None:
    client = grpcclient.InferenceServerClient(address)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                await client.infer("simple", simple_inputs(), client_timeout=2.0)
                return
            except InferenceServerException:
                if time.monotonic() > deadline or not proc.alive():
                    raise RuntimeError(f"{address} did not serve; log ends:\n{proc.tail()}") from None
                await asyncio.sleep(0.2)
    finally:
        await client.close()


def serve_bare_proxy(port: int, upstream: str) -> None:
    """ModelInfer relayed as bytes, nothing else: no routing, retries, ids, metrics nor logs."""

    async def main() -> None:
        channel = grpc.aio.insecure_channel(upstream)
        infer = channel.unary_unary(f"/{SERVICE}/ModelInfer")

        async def forward(message: bytes, context: grpc.aio.ServicerContext) -> bytes:
            answer: bytes = await infer(message, timeout=context.time_remaining())
            return answer

        handler = grpc.unary_unary_rpc_method_handler(forward)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": handler}),)
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(main())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bare-proxy", nargs=2, metavar=("PORT", "UPSTREAM"), help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--bare-proxy"]:
        serve_bare_proxy(int(args[1]), args[2])
        return 0
    return scenario_main(__doc__ or "", RESULTS / "grpc_overhead.json", add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
