"""Skew: four nodes of the latency fixture, one of them three times slower, behind each
scheduling policy on each of the gateway's data planes and behind nginx.

    .venv/bin/python -m bench.skew [--duration-s 5] [--rounds 3] [--service-time-ms 20]
                                   [--slowdown 3] [--connections 8] [--smoke] [--output FILE]

Nodes 1-3 sleep `--service-time-ms` per request, node 4 `--slowdown` times as long (one
instance each, no batching: 50 + 50 + 50 + 16.7 requests/s at 20 ms). One cluster, one gateway
per policy on the Python data plane (the cluster's own on `round_robin`, two more on
`least_outstanding` and `p2c`, each with its own embedded scheduler), their twins on the Envoy
data plane (`envoy_<policy>`: Envoy, one worker, balancing the nodes itself with the policy's
counterpart), and nginx in front of the same four Triton nodes with `least_conn` (the
reference for a plain C balancer) and with its default round robin. wrk drives each with the
same closed-loop load (`--connections`, two per node by default), the targets interleaved per
round; reported per target: requests/s, p50/p99/p99.9 (wrk's histogram) and max, and p99 as a
fraction of the Python round robin's.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from bench.fixture import (
    LatencyModel,
    infer_path,
    latency_cluster,
    nginx_balancer,
    policy_gateway,
    start,
    triton_urls,
)
from bench.load import Load, interleaved, median_tail, raw, write_script
from bench.overhead import ENVOY_PLANE, Target
from bench.scenario import RESULTS, scenario_main

POLICIES = ("round_robin", "least_outstanding", "p2c")
ENVOY_TARGETS = tuple(f"envoy_{policy}" for policy in POLICIES)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service-time-ms", type=float, default=20.0)
    parser.add_argument("--slowdown", type=float, default=3.0, help="node 4's service time ÷ the others'")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (closed loop)")


def run(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    fast, slow = args.service_time_ms, args.service_time_ms * args.slowdown
    nodes = {f"node-{i}": [LatencyModel("latency", fast)] for i in (1, 2, 3)}
    nodes["node-4"] = [LatencyModel("latency", slow)]
    fleet = latency_cluster(tmp, nodes, scheduler={"policy": POLICIES[0]})
    start(fleet, stack)
    targets = [Target(POLICIES[0], fleet.gateway_url, {"gateway": fleet.gateway.pid})]
    for policy in POLICIES[1:]:
        targets.append(stack.enter_context(policy_gateway(fleet, policy)))
    for policy, name in zip(POLICIES, ENVOY_TARGETS, strict=True):
        targets.append(stack.enter_context(policy_gateway(fleet, policy, name=name, env=ENVOY_PLANE)))
    upstreams = list(triton_urls(fleet).values())
    targets.append(stack.enter_context(nginx_balancer("nginx_least_conn", upstreams, "least_conn;")))
    targets.append(stack.enter_context(nginx_balancer("nginx_round_robin", upstreams, "")))
    loads = [Load(t.name, t.url + infer_path(), 2, args.connections) for t in targets]
    print(
        f"measuring {', '.join(t.name for t in targets)}: nodes at {fast:g}/{fast:g}/{fast:g}/{slow:g} ms, "
        f"{args.connections} connections, {args.rounds} rounds of {args.duration_s:g} s"
    )
    runs = interleaved(loads, write_script(tmp), args.duration_s, args.rounds)
    summary = {name: median_tail(rs) for name, rs in runs.items()}
    round_robin = summary[POLICIES[0]]
    for figures in summary.values():
        figures["p99_vs_round_robin"] = round(figures["p99_ms"] / round_robin["p99_ms"], 3)
        figures["rps_vs_round_robin"] = round(figures["rps"] / round_robin["rps"], 3)
    best = min(POLICIES, key=lambda p: summary[p]["p99_ms"])
    best_envoy = min(ENVOY_TARGETS, key=lambda p: summary[p]["p99_ms"])
    capacity = 3 * 1000 / fast + 1000 / slow
    print()
    print(table(summary))
    print(f"best policy by p99: {best}, {summary[best]['p99_vs_round_robin']:.0%} of round robin's p99")
    print(f"best on Envoy's data plane: {best_envoy}, p99 {summary[best_envoy]['p99_ms']:.1f} ms")
    return {
        "settings": {
            "duration_s": args.duration_s,
            "rounds": args.rounds,
            "service_times_ms": [fast, fast, fast, slow],
            "instances_per_node": 1,
            "dynamic_batching": False,
            "connections": args.connections,
            "capacity_rps": round(capacity, 1),
        },
        # On the Python data plane, as before the Envoy twins; theirs apart.
        "best_policy": best,
        "best_envoy_policy": best_envoy,
        "summary": summary,
        "runs": raw(runs),
    }


def table(summary: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'target':23} {'req/s':>7} {'p50':>7} {'p99':>7} {'p99.9':>7} {'max':>7} "
        f"{'p99/rr':>7} {'errors':>6}  (ms)"
    )
    lines = [head, "─" * len(head)]
    for name, f in summary.items():
        lines.append(
            f"{name:23} {f['rps']:7.1f} {f['p50_ms']:7.1f} {f['p99_ms']:7.1f} {f['p999_ms']:7.1f} "
            f"{f['max_ms']:7.1f} {f['p99_vs_round_robin']:7.2f} {f['errors']:6}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return scenario_main(__doc__ or "", RESULTS / "skew.json", add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
