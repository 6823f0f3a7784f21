"""Runs every scenario for a few seconds, then the report, to prove the harness works.

    .venv/bin/python -m bench.smoke [--skip paid,...] [--keep DIR]

Nothing here is a measurement: the results and the page go to a temp dir (or `--keep DIR`),
never over bench/results or docs. Each scenario runs as its own process, as `make bench` runs
it; the first failure fails the smoke run, and the durations are printed at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (scenario, its flags for a run of a few seconds)
SMOKE = (
    (
        "overhead",
        ["--duration-s", "1", "--rounds", "1", "--only", "direct,gateway,gateway_envoy,bare_envoy,nginx"],
    ),
    ("scaleout", ["--smoke", "--sizes", "1,2"]),
    ("skew", ["--smoke"]),
    ("failover", ["--smoke"]),
    ("paid", ["--duration-s", "1", "--rounds", "1"]),
    ("grpc_overhead", ["--duration-s", "1", "--rounds", "1"]),
    ("generate", ["--smoke"]),
    ("faults", ["--smoke", "--faults", "pause,sigkill"]),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--skip", default="", help="comma-separated scenarios not to run")
    parser.add_argument("--keep", type=Path, help="write results and the page here, and keep them")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as tmp:
        folder = args.keep or Path(tmp)
        results, docs = folder / "results", folder / "docs"
        results.mkdir(parents=True, exist_ok=True)
        durations: dict[str, float] = {}
        steps = [
            (name, [f"bench.{name}", *flags, "--output", str(results / f"{name}.json")])
            for name, flags in SMOKE
            if name not in skip
        ]
        steps.append(("report", ["bench.report", "--results", str(results), "--docs", str(docs)]))
        for name, args_ in steps:
            print(f"=== smoke: {name}", flush=True)
            began = time.monotonic()
            done = subprocess.run([sys.executable, "-m", *args_])
            durations[name] = time.monotonic() - began
            if done.returncode != 0:
                print(f"smoke: {name} failed with exit status {done.returncode}", file=sys.stderr)
                return done.returncode or 1
        total = sum(durations.values())
        print("smoke durations: " + ", ".join(f"{n} {s:.0f} s" for n, s in durations.items()), end="")
        print(f"; total {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
