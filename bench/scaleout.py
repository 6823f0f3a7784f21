"""Scale-out: the gateway, on each of its data planes, in front of 1, 2, 4 and 8 nodes of the
latency fixture.

    .venv/bin/python -m bench.scaleout [--duration-s 5] [--rounds 3] [--service-time-ms 20]
                                       [--per-node 4] [--sizes 1,2,4,8] [--smoke] [--output FILE]

One cluster of 8 nodes serves the fixture under a model name per size: `latency_n4` is on
nodes 1-4 only, so the gateway spreads its requests over exactly 4 nodes. The sizes are then
measured in interleaved rounds on one running cluster (drift of a shared machine hits them
alike) instead of four clusters started one after the other, through the cluster's gateway
(the Python data plane, `gateway_n<N>`) and through a second one on the Envoy data plane
(`gateway_envoy_n<N>`: Envoy, one worker, in front of it). Each node has one instance at
`--service-time-ms` with dynamic batching off: a node serves at most 1000 / service time
requests/s whatever this machine's CPU, so the ideal is N times one node.

wrk keeps `--per-node` connections per node open (closed loop), enough to keep every instance
busy. Reported per size and plane: requests/s, p50/p99, and the scaling efficiency
thr(N) / (N · thr(1)) on that plane; plus Triton directly (node 1, no gateway) at size 1 for
the fixture's own capacity. Everything
runs on this machine: 8 `tritonserver` processes, their Python backend stubs, the gateway and
wrk share its cores, which is what limits the efficiency at 8 nodes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from bench.fixture import LatencyModel, infer_path, latency_cluster, policy_gateway, start, triton_urls
from bench.load import Load, interleaved, median_tail, raw, write_script
from bench.overhead import ENVOY_PLANE
from bench.scenario import RESULTS, scenario_main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service-time-ms", type=float, default=20.0)
    parser.add_argument("--per-node", type=int, default=4, help="wrk connections per node")
    parser.add_argument("--sizes", default="1,2,4,8", help="node counts, comma-separated")


def run(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    sizes = sorted(int(n) for n in args.sizes.split(","))
    largest = sizes[-1]
    nodes = {
        f"node-{i}": [LatencyModel(f"latency_n{n}", args.service_time_ms) for n in sizes if n >= i]
        for i in range(1, largest + 1)
    }
    fleet = latency_cluster(tmp, nodes)
    start(fleet, stack)
    policy = fleet.config.scheduler.policy.value
    envoy = stack.enter_context(
        policy_gateway(fleet, policy, f"latency_n{largest}", "gateway_envoy", ENVOY_PLANE)
    )
    # {target name prefix: the gateway's URL}; a target is `<prefix>_n<N>`.
    gateways = {"gateway": fleet.gateway_url, "gateway_envoy": envoy.url}
    node_1 = triton_urls(fleet)["node-1"]
    loads = [Load("direct_n1", node_1 + infer_path(f"latency_n{sizes[0]}"), 1, args.per_node)]
    for n in sizes:
        connections = args.per_node * n
        for prefix, gateway_url in gateways.items():
            url = gateway_url + infer_path(f"latency_n{n}")
            loads.append(Load(f"{prefix}_n{n}", url, min(2, connections), connections))
    print(
        f"measuring sizes {sizes} at {args.service_time_ms:g} ms, {args.per_node} connections per node, "
        f"through {', '.join(gateways)}: {args.rounds} rounds of {args.duration_s:g} s"
    )
    runs = interleaved(loads, write_script(tmp), args.duration_s, args.rounds)
    summary = {name: median_tail(rs) for name, rs in runs.items()}
    ideal_node_rps = 1000.0 / args.service_time_ms
    for prefix in gateways:
        one = summary[f"{prefix}_n{sizes[0]}"]["rps"] / sizes[0]
        for n in sizes:
            figures = summary[f"{prefix}_n{n}"]
            figures["nodes"] = n
            figures["efficiency"] = round(figures["rps"] / (n * one), 3)
            figures["vs_ideal"] = round(figures["rps"] / (n * ideal_node_rps), 3)
    print()
    print(table(summary))
    return {
        "settings": {
            "duration_s": args.duration_s,
            "rounds": args.rounds,
            "service_time_ms": args.service_time_ms,
            "instances_per_node": 1,
            "dynamic_batching": False,
            "connections_per_node": args.per_node,
            "sizes": sizes,
            "policy": policy,
        },
        "summary": summary,
        "runs": raw(runs),
    }


def table(summary: dict[str, dict[str, Any]]) -> str:
    head = f"{'target':>18} {'req/s':>8} {'ideal':>7} {'efficiency':>10} {'p50 ms':>7} {'p99 ms':>7}"
    head += f" {'errors':>6}"
    lines = [head, "─" * len(head)]
    for name, f in summary.items():
        sized = "nodes" in f  # all but direct_n1
        ideal = f"{f['rps'] / f['vs_ideal']:7.0f}" if sized and f["vs_ideal"] else f"{'':>7}"
        efficiency = f"{f['efficiency']:10.1%}" if sized else f"{'':>10}"
        lines.append(
            f"{name:>18} {f['rps']:8.1f} {ideal} {efficiency} {f['p50_ms']:7.1f} "
            f"{f['p99_ms']:7.1f} {f['errors']:6}"
        )
    lines.append("efficiency: req/s at N / (N * req/s at 1), both through the same gateway")
    lines.append("ideal: N * 1000 / service time")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return scenario_main(__doc__ or "", RESULTS / "scaleout.json", add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
