"""wrk runs with the tail percentiles (p99.9, max) that scale-out and skew report, and rounds
that interleave the targets."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.fixture import LATENCY_BODY
from bench.overhead import WRK_SCRIPT, machine_busy_s, tree_busy_s
from tritonfleet.processes import die_with_parent


@dataclass(frozen=True)
class Load:
    """One target under one closed-loop load: wrk's URL (path included), threads, connections."""

    target: str
    url: str
    threads: int
    connections: int


@dataclass
class TailRun:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    requests: int
    errors: int
    # Share of the machine's CPU used meanwhile by processes this benchmark did not start.
    foreign_cpu_share: float = 0.0


def write_script(folder: Path, body: str = LATENCY_BODY) -> Path:
    script = folder / "latency.lua"
    script.write_text(WRK_SCRIPT % body)
    return script


def wrk_tail(script: Path, load: Load, duration_s: float) -> TailRun:
    argv = ["wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{duration_s:g}s"]
    argv += ["--timeout", "10s", "--latency", "-s", str(script), load.url]
    busy_before_s, ours_before_s = machine_busy_s(), tree_busy_s(os.getpid())
    out = subprocess.run(argv, capture_output=True, text=True, check=True, preexec_fn=die_with_parent).stdout
    foreign_s = (machine_busy_s() - busy_before_s) - (tree_busy_s(os.getpid()) - ours_before_s)
    line = next(line for line in out.splitlines() if line.startswith("BENCH "))
    f = json.loads(line.removeprefix("BENCH "))
    return TailRun(
        rps=round(f["requests"] / (f["duration_us"] / 1e6), 1),
        p50_ms=f["p50_us"] / 1000,
        p90_ms=f["p90_us"] / 1000,
        p99_ms=f["p99_us"] / 1000,
        p999_ms=f["p999_us"] / 1000,
        max_ms=f["max_us"] / 1000,
        mean_ms=f["mean_us"] / 1000,
        requests=f["requests"],
        errors=f["status_errors"] + f["socket_errors"],
        foreign_cpu_share=round(max(foreign_s, 0.0) / (duration_s * (os.cpu_count() or 1)), 3),
    )


def interleaved(
    loads: list[Load], script: Path, duration_s: float, rounds: int, pause_s: float = 0.5
) -> dict[str, list[TailRun]]:
    """{target: [run per round]}, every target once per round, in the same order each round.
    The pause lets what a run left queued on the nodes drain before the next one starts."""
    for load in loads:
        wrk_tail(script, load, 1.0)  # warm-up: connections, caches
    runs: dict[str, list[TailRun]] = {load.target: [] for load in loads}
    for round_no in range(1, rounds + 1):
        for load in loads:
            time.sleep(pause_s)
            run = wrk_tail(script, load, duration_s)
            runs[load.target].append(run)
            print(
                f"  round {round_no} {load.target:20} c={load.connections:<3} {run.rps:8.1f} req/s  "
                f"p50 {run.p50_ms:7.1f}  p99 {run.p99_ms:7.1f}  p99.9 {run.p999_ms:7.1f}  "
                f"max {run.max_ms:7.1f} ms  errors {run.errors}  foreign cpu {run.foreign_cpu_share:.0%}",
                flush=True,
            )
    return runs


def median_tail(runs: list[TailRun]) -> dict[str, Any]:
    figures: dict[str, Any] = {
        key: round(statistics.median(getattr(r, key) for r in runs), 3)
        for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms", "foreign_cpu_share")
    }
    figures["requests"] = sum(r.requests for r in runs)
    figures["errors"] = sum(r.errors for r in runs)
    return figures


def raw(runs: dict[str, list[TailRun]]) -> dict[str, list[dict[str, Any]]]:
    return {name: [asdict(r) for r in rs] for name, rs in runs.items()}
