"""`tritonfleet COMMAND`: one command per service, plus `up`, `status` and `bench`.

Each service command gets a flag for every key of its config section (and of `[cluster]`),
derived from the config models, so that flags, environment and TOML never drift apart.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tritonfleet.config import ConfigError, FleetConfig, load_config, parse_value
from tritonfleet.logs import setup_logging

# command → (config sections it reads, its own first; "module:function" that runs it; help)
COMMANDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "health-checker": (("health",), "tritonfleet.health.command:serve", "Run the node registry."),
    "scheduler": (
        ("scheduler", "health"),
        "tritonfleet.scheduler.command:serve",
        "Run the scheduler service.",
    ),
    "gateway": (
        ("gateway", "scheduler", "health", "payments", "token_manager", "chain"),
        "tritonfleet.gateway.command:serve",
        "Run the gateway.",
    ),
    "node": (("node", "health"), "tritonfleet.node.command:serve", "Run a node manager and its Triton."),
    "up": (
        ("gateway", "scheduler", "health", "node", "payments", "token_manager", "settler", "chain", "web"),
        "tritonfleet.up.command:serve",
        "Run a whole local cluster.",
    ),
    "netns": (
        ("gateway", "node", "health"),
        "tritonfleet.netns.command:serve",
        "Run a cluster whose hosts are network namespaces (root); faults: python -m tritonfleet.netns.",
    ),
    "status": (
        ("gateway",),
        "tritonfleet.health.status:serve",
        "Print the table of nodes, and the gateway's data plane.",
    ),
    "token-manager": (
        ("token_manager", "payments", "chain"),
        "tritonfleet.token_manager.command:serve",
        "Run the token manager: API keys, balances, prices, usage, dev faucet.",
    ),
    "settler": (
        ("settler", "payments", "chain"),
        "tritonfleet.settler.command:serve",
        "Settle charges on chain.",
    ),
    "reconcile": (
        ("payments", "chain"),
        "tritonfleet.settler.command:reconcile",
        "Compare the ledger with the chain; exit 1 on any mismatch.",
    ),
    "chain": (
        ("chain",),
        "tritonfleet.payments.chain.command:serve",
        "Run a local Ethereum node with the contracts.",
    ),
    "web": (("web",), "tritonfleet.web.command:serve", "Run the web frontend."),
}


# `tritonfleet bench SCENARIO …` runs `python -m bench.SCENARIO …` of the repository's bench/,
# which borrows the tests' cluster fixtures and so lives beside them, not in the package.
BENCH_SCENARIOS = ("overhead", "scaleout", "skew", "failover", "paid", "grpc_overhead", "smoke", "report")


def _flag(section: str, key: str, shared: bool) -> str:
    # Keys of one's own section are bare (--port); other sections are prefixed (--scheduler-policy),
    # except [cluster], whose keys are unambiguous (--health-urls, --token-file).
    name = key if shared or section == "cluster" else f"{section}_{key}"
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tritonfleet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for command, (sections, _, help_text) in COMMANDS.items():
        cmd = sub.add_parser(command, help=help_text, description=help_text, allow_abbrev=False)
        cmd.add_argument("--config", type=Path, default=None, help="TOML file (default: ./fleet.toml)")
        cmd.add_argument("--log-level", default="INFO")
        own = sections[0] if sections and command != "up" else None
        for section in ("cluster", *sections):
            model = FleetConfig.model_fields[section].annotation
            assert isinstance(model, type) and issubclass(model, BaseModel)
            for key, field in model.model_fields.items():
                if "SecretStr" in str(field.annotation):
                    continue  # secrets never on a command line, where `ps` shows them
                cmd.add_argument(
                    _flag(section, key, shared=section == own),
                    dest=f"{section}.{key}",
                    default=None,
                    metavar=key.upper(),
                    help=f"[{section}] {key} (default: {field.default!r})",
                )
    bench = sub.add_parser(
        "bench",
        help="Run one benchmark scenario (from a checkout).",
        description="Run one benchmark scenario of bench/ from the repository root; "
        "SCENARIO --help lists its options. `make bench` runs them all.",
    )
    bench.add_argument("scenario", choices=BENCH_SCENARIOS)
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the scenario's own options")
    return parser


def run_bench(scenario: str, options: Sequence[str]) -> int:
    if not (Path("bench") / f"{scenario}.py").is_file():
        print(
            "tritonfleet bench: run it from the root of a TritonFleet checkout (no bench/ here)",
            file=sys.stderr,
        )
        return 2
    return subprocess.call([sys.executable, "-m", f"bench.{scenario}", *options])


def parse_config(args: argparse.Namespace) -> FleetConfig:
    overrides: dict[str, dict[str, Any]] = {}
    for dest, raw in vars(args).items():
        if "." not in dest or raw is None:
            continue
        section, key = dest.split(".", 1)
        model = FleetConfig.model_fields[section].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        overrides.setdefault(section, {})[key] = parse_value(raw, model.model_fields[key].annotation)
    return load_config(args.config, overrides=overrides)


def _resolve(target: str) -> Callable[[FleetConfig], int | None]:
    module, _, func = target.partition(":")
    run: Callable[[FleetConfig], int | None] = getattr(importlib.import_module(module), func)
    return run


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        return run_bench(args.scenario, args.options)
    setup_logging(args.command, args.log_level)
    try:
        config = parse_config(args)
        return _resolve(COMMANDS[args.command][1])(config) or 0
    except ConfigError as exc:
        print(f"tritonfleet {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
