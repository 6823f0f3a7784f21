"""The paid path against the unpaid one, side by side, for each kind of ledger.

    .venv/bin/python -m bench.paid [--duration-s 5] [--rounds 3] [--ledgers sqlite,postgresql]

For each ledger, one cluster with payments on (chain, token manager, settler, one Triton node
serving `simple`) and two gateways in front of the same node: the cluster's own, charging every
request to a funded key, and a second with payments off. wrk drives both with the same requests
(bench.overhead's harness: saturation and low-concurrency latency, targets interleaved per
round). Every successful paid request is one durable charge, so the paid gateway's requests per
second at saturation are its charges recorded per second. After the runs the settler settles
everything; the gas of those settlements per settled inference is set beside the gas of one
transaction per inference (the original design's `settlement = "per_request"`). Results go to
`bench/results/paid.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.extauthz import extauthz_floor
from bench.fixture import python_data_plane
from bench.overhead import (
    BODY,
    ENVOY_PLANE,
    WRK_SCRIPT,
    Target,
    children,
    cpu_s,
    measure,
    service,
    summarize,
    table,
    wait_infer_ok,
)
from bench.scenario import RESULTS, scenario_main
from tests.e2e.cluster import cluster, paid_sections
from tests.postgres import postgres_schema
from tritonfleet.net import free_port
from tritonfleet.payments.chain.client import connect
from tritonfleet.payments.ledger.database import default_ledger_url
from tritonfleet.payments.ledger.states import BatchState
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.up.cluster import LocalCluster
from tritonfleet.up.devaccount import DEV_CREDIT, dev_user, ensure_dev_key

# Enough credit for every paid request of a long run at a few thousand per second.
CREDIT = 5_000_000
FAUCET_MAX = 1_000_000


@contextlib.contextmanager
def unpaid_gateway(fleet: LocalCluster) -> Iterator[Target]:
    port = free_port()
    env = {
        **fleet.env,
        "TRITONFLEET_GATEWAY_PORT": str(port),
        "TRITONFLEET_GATEWAY_GRPC_PORT": str(free_port()),
        "TRITONFLEET_PAYMENTS_ENABLED": "false",
    }
    argv = [sys.executable, "-m", "tritonfleet", "gateway"]
    with service("gateway_unpaid", argv, env, fleet.state_dir / "logs") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_infer_ok(url, 60.0, proc)
        yield Target("unpaid", url, {"gateway": proc.pid})


@contextlib.contextmanager
def paid_envoy_gateway(fleet: LocalCluster, auth: dict[str, str]) -> Iterator[Target]:
    """A second paid gateway of the cluster, on the Envoy data plane (one worker): Envoy holds and
    charges each request through the Python gateway's authorizer (gateway/http/authorizer.py);
    Envoy, the Python gateway and its charge writer all count."""
    port = free_port()
    env = {
        **fleet.env,
        "TRITONFLEET_GATEWAY_PORT": str(port),
        "TRITONFLEET_GATEWAY_GRPC_PORT": str(free_port()),
        **ENVOY_PLANE,
    }
    argv = [sys.executable, "-m", "tritonfleet", "gateway"]
    with service("gateway_paid_envoy", argv, env, fleet.state_dir / "logs") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_infer_ok(url, 60.0, proc, headers=auth)
        pids = {"gateway": proc.pid}
        for child in children(proc.pid):
            comm = Path(f"/proc/{child}/comm").read_text().strip()
            pids["envoy" if comm == "envoy" else "charge_writer"] = child
        yield Target("paid_envoy", url, pids)


def triton_url(fleet: LocalCluster) -> str:
    [node] = httpx.get(f"{fleet.health_url}/v1/nodes", headers=fleet.cluster_auth, timeout=5.0).json()[
        "nodes"
    ]
    return str(node["triton_http_url"])


def funded_key(fleet: LocalCluster) -> str:
    """The dev account's key, with CREDIT in the vault and the gateway aware of it."""
    _, key = ensure_dev_key(fleet.state_dir, fleet.token_manager_url)
    address = dev_user(fleet.state_dir).address
    top_ups = (CREDIT - DEV_CREDIT) // FAUCET_MAX
    for _ in range(top_ups):
        topped = httpx.post(
            f"{fleet.token_manager_url}/v1/faucet",
            json={"address": address, "amount": FAUCET_MAX},
            timeout=60,
        )
        topped.raise_for_status()
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + 30
    funded = DEV_CREDIT + top_ups * FAUCET_MAX
    while (httpx.get(f"{fleet.gateway_url}/v1/credit", headers=headers).json().get("deposit") or 0) < funded:
        if time.monotonic() > deadline:
            raise TimeoutError("the gateway did not see the deposit")
        time.sleep(0.2)
    return key


def settlement_gas(fleet: LocalCluster) -> dict[str, Any]:
    """Gas per settled inference once the settler has settled everything charged."""
    with Ledger.open(default_ledger_url(fleet.config)) as ledger:
        deadline = time.monotonic() + 120
        while ledger.unsettled_by_account() and time.monotonic() < deadline:
            time.sleep(0.5)
        batches = [b for b in ledger.settlements(limit=10**6) if b.state is BatchState.CONFIRMED]
    chain = connect(fleet.config, signing=False)
    gas = [chain.receipt_of(b.tx_hash).gas_used for b in batches if b.tx_hash]  # type: ignore[union-attr]
    charges = sum(b.charge_count for b in batches)
    return {
        "batches": len(batches),
        "charges": charges,
        "gas": sum(gas),
        "gas_per_inference": round(sum(gas) / charges, 1) if charges else None,
    }


def run_ledger(kind: str, args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    ledger_url = stack.enter_context(postgres_schema()) if kind == "postgresql" else ""
    folder = tmp / kind
    sections = paid_sections(folder, ledger_url)
    # The settler at its default pace, as `make up` runs it (the tests settle every second).
    del sections["settler"]
    fleet = cluster(folder, {"node-1": ["simple"]}, **python_data_plane(sections))
    stack.callback(fleet.stop)
    print(f"[{kind}] starting a paid cluster ...", flush=True)
    fleet.start()
    key = funded_key(fleet)
    auth = {"Authorization": f"Bearer {key}"}
    unpaid = stack.enter_context(unpaid_gateway(fleet))
    # The gateway's charge writer process is part of the paid path: its CPU counts too.
    (writer,) = children(fleet.gateway.pid)
    paid = Target("paid", fleet.gateway_url, {"gateway": fleet.gateway.pid, "charge_writer": writer})
    # Charging behind Envoy (external authorization, the charge in the response phase), and that
    # design's floor: the same calls to an authorizer that checks and records nothing.
    paid_envoy = stack.enter_context(paid_envoy_gateway(fleet, auth))
    floor = stack.enter_context(extauthz_floor(triton_url(fleet), fleet.state_dir / "logs", auth))
    # One script for both, the key included: the unpaid gateway passes the header on to Triton,
    # which ignores it, so both get the same requests, in interleaved rounds.
    script = folder / "infer.lua"
    script.write_text(
        WRK_SCRIPT.replace(
            'wrk.headers["Content-Type"]',
            f'wrk.headers["Authorization"] = "Bearer {key}"\nwrk.headers["Content-Type"]',
        )
        % BODY
    )
    assert fleet.settler is not None
    settler_cpu_s = cpu_s([fleet.settler.pid])
    runs = measure([unpaid, paid, paid_envoy, floor], script, args.duration_s, args.rounds)
    summary = summarize(runs)
    ratio = summary["paid"]["saturation"]["rps"] / summary["unpaid"]["saturation"]["rps"]
    print(table(summary))
    print(
        f"[{kind}] paid / unpaid throughput: {ratio:.2f}; charges recorded per second: "
        f"{summary['paid']['saturation']['rps']:.0f}",
        flush=True,
    )
    gas = settlement_gas(fleet)
    # The settler runs beside the gateways at its own pace: what settling the run's charges cost.
    settler_cpu_s = cpu_s([fleet.settler.pid]) - settler_cpu_s
    if gas["charges"]:
        gas["settler_cpu_us_per_charge"] = round(settler_cpu_s / gas["charges"] * 1e6, 1)
    print(f"[{kind}] settlement: {gas}", flush=True)
    return {"summary": summary, "paid_vs_unpaid": round(ratio, 3), "settlement": gas}


def run(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for kind in args.ledgers.split(","):
        # Each ledger's cluster is stopped before the next one starts.
        with contextlib.ExitStack() as ledger_stack:
            result[kind] = run_ledger(kind, args, tmp, ledger_stack)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ledgers", default="sqlite,postgresql")


def main(argv: list[str] | None = None) -> int:
    return scenario_main(__doc__ or "", RESULTS / "paid.json", add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
