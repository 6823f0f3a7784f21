"""Time to the first event of Triton's `generate_stream`: directly at a node, through the Python
gateway, and through Envoy in front of it, on the same node.

    .venv/bin/python -m bench.generate [--duration-s 5] [--rounds 3] [--output FILE]

One client streams `text_generation` answers (4 tokens each) one after another, on a kept-alive
connection, for `--duration-s` per target and round; rounds interleave the targets. The figures:
the p50/p99 time from sending the request to reading its first `data:` event, and to its last;
and the first event's p50 added over direct. The goal (issue 15) is a first event through the
gateway within 1 ms of direct Triton's.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.overhead import ENVOY_PLANE, Target, gateway_process, node_urls
from bench.scenario import RESULTS, scenario_main
from tests.e2e.cluster import cluster

MODEL = "text_generation"
PATH = f"/v2/models/{MODEL}/generate_stream"
BODY = {"text_input": "the fleet", "max_tokens": 4, "stream": True}
GOAL_MS = 1.0


def stream_once(client: httpx.Client, url: str) -> tuple[float, float]:
    """(first event, last event) seconds after the request was sent."""
    sent = time.perf_counter()
    first = 0.0
    with client.stream("POST", url + PATH, json=BODY) as answer:
        answer.raise_for_status()
        for line in answer.iter_lines():
            if line.startswith("data: "):
                first = first or time.perf_counter() - sent
    return first, time.perf_counter() - sent


def measure(targets: list[Target], duration_s: float, rounds: int) -> dict[str, dict[str, list[float]]]:
    samples: dict[str, dict[str, list[float]]] = {t.name: {"first": [], "whole": []} for t in targets}
    with httpx.Client(timeout=30) as client:
        for target in targets:
            for _ in range(5):  # warm-up: the connection, the model's first generations
                stream_once(client, target.url)
        for round_no in range(1, rounds + 1):
            for target in targets:
                until = time.monotonic() + duration_s
                count = 0
                while time.monotonic() < until:
                    first, whole = stream_once(client, target.url)
                    samples[target.name]["first"].append(first * 1000)
                    samples[target.name]["whole"].append(whole * 1000)
                    count += 1
                print(f"  round {round_no} {target.name:14} {count} streams", flush=True)
    return samples


def percentile(values: list[float], share: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * share))]


def summarize(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, Any]]:
    summary = {
        name: {
            "streams": len(figures["first"]),
            "first_p50_ms": round(statistics.median(figures["first"]), 3),
            "first_p99_ms": round(percentile(figures["first"], 0.99), 3),
            "whole_p50_ms": round(statistics.median(figures["whole"]), 3),
        }
        for name, figures in samples.items()
    }
    direct = summary["direct"]["first_p50_ms"]
    for figures in summary.values():
        figures["first_p50_added_ms"] = round(figures["first_p50_ms"] - direct, 3)
    return summary


def run(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    fleet = cluster(tmp, {"node-1": [MODEL]}, payments={"enabled": False}, gateway={"data_plane": "python"})
    stack.callback(fleet.stop)
    print("starting one Triton node with text_generation, health checker and gateway ...", flush=True)
    fleet.start()
    ready = '{"text_input": "x", "max_tokens": 1}'
    targets = [
        Target("direct", node_urls(fleet)["triton"]),
        Target("gateway", fleet.gateway_url),
        stack.enter_context(
            gateway_process(
                fleet, "gateway_envoy", ENVOY_PLANE, f"/v2/models/{MODEL}/generate", ready_body=ready
            )
        ),
    ]
    print(f"measuring {', '.join(t.name for t in targets)}: {args.rounds} rounds of {args.duration_s:g} s")
    summary = summarize(measure(targets, args.duration_s, args.rounds))
    print(f"\n{'target':14} {'streams':>7} {'first p50':>9} {'p99':>7} {'+p50':>7} {'whole p50':>9}  (ms)")
    for name, f in summary.items():
        print(
            f"{name:14} {f['streams']:7} {f['first_p50_ms']:9.3f} {f['first_p99_ms']:7.3f}"
            f" {f['first_p50_added_ms']:+7.3f} {f['whole_p50_ms']:9.3f}"
        )
    return {
        "settings": {"duration_s": args.duration_s, "rounds": args.rounds, "body": BODY, "goal_ms": GOAL_MS},
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    return scenario_main(__doc__ or "", RESULTS / "generate.json", lambda parser: None, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
