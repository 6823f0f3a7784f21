"""What every scenario's command shares: flags, signals, a temp dir with everything it started
stopped after (on Ctrl-C and errors too), when and where it ran, and its JSON under bench/results."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def environment() -> dict[str, Any]:
    """The machine and the versions of what the scenarios measure with and against."""

    def version(argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True)
        return (done.stdout + done.stderr).strip().splitlines()[0]

    import aiohttp
    import grpc
    import uvloop

    from tritonfleet.gateway.envoy.binary import locate
    from tritonfleet.gateway.errors import EnvoyNotFound

    try:
        # "<path>  version: <commit>/1.40.0/Clean/RELEASE/BoringSSL": the release.
        envoy = version([str(locate("")), "--version"]).rpartition("version: ")[2].split("/")[1]
    except EnvoyNotFound:
        envoy = "not found"
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop": uvloop.__version__,
        "grpcio": grpc.__version__,
        "nginx": version(["nginx", "-v"]),
        "envoy": envoy,
        "wrk": version(["wrk", "-v"]),
        "kernel": platform.release(),
    }


def scenario_main(
    doc: str,
    default_output: Path,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace, Path, contextlib.ExitStack], dict[str, Any]],
    argv: list[str] | None = None,
) -> int:
    """Parse the flags, run the scenario in a temp dir with everything it started stopped after
    (on Ctrl-C and errors too), add when and where it ran, and write its JSON."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=5.0, help="seconds of each measured run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every target (median shown)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, to prove the harness works")
    parser.add_argument("--output", type=Path, default=default_output)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration_s, args.rounds = 1.0, 1
    has_nginx = shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()
    if shutil.which("wrk") is None or not has_nginx:
        print("wrk and nginx are needed (apt-get install wrk nginx)", file=sys.stderr)
        return 2
    # SIGINT explicitly too: a shell that starts us in the background leaves it ignored.
    signal.signal(signal.SIGINT, raise_interrupt)
    signal.signal(signal.SIGTERM, raise_interrupt)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, contextlib.ExitStack() as stack:
        try:
            result = run(args, Path(tmp), stack)
        except KeyboardInterrupt:
            print("interrupted; stopping everything", file=sys.stderr)
            return 130
        finally:
            # Ctrl-C again while stopping must not leave children behind.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": environment(),
        "wall_s": round(time.monotonic() - began, 1),
        "smoke": args.smoke,
        **result,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output} ({result['wall_s']:.0f} s)")
    return 0
