"""Several paying gateways on one PostgreSQL ledger: together they never spend more than a deposit.

Each gateway serves from credit leases the ledger grants atomically, so a deposit D buys D,
not k·D with k gateways. One account whose deposit pays for 300 requests sends 1,000 at once,
spread over the gateways: at most 300 are served, the rest get 402, and once settled the ledger,
the chain and the served count agree.
"""

from __future__ import annotations

import itertools
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import pytest

from tests.e2e.cluster import cluster, paid_sections, simple_body
from tests.e2e.test_payments import auth, funded_user, ledger, wait_for
from tests.postgres import postgres_schema
from tritonfleet.net import free_port
from tritonfleet.payments.chain.client import connect
from tritonfleet.processes import ServiceProcess, wait_http_ok
from tritonfleet.up.cluster import LocalCluster

PRICE = 1  # `simple`'s price in the default config
DEPOSIT = 300
REQUESTS = 1000


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    tmp = tmp_path_factory.mktemp("shared")
    with ExitStack() as stack:
        ledger_url = stack.enter_context(postgres_schema())
        local = cluster(tmp, {"node-1": ["simple"]}, **paid_sections(tmp, ledger_url))
        stack.callback(local.stop)
        local.start()
        yield local


def start_gateway(
    fleet: LocalCluster, name: str, stack: ExitStack, data_plane: str = "envoy"
) -> tuple[str, ServiceProcess]:
    """Another gateway of the cluster: the very same command, on ports of its own."""
    port = free_port()
    env = {
        **fleet.env,
        "TRITONFLEET_GATEWAY_PORT": str(port),
        "TRITONFLEET_GATEWAY_GRPC_PORT": str(free_port()),
        "TRITONFLEET_GATEWAY_DATA_PLANE": data_plane,
    }
    argv = [sys.executable, "-m", "tritonfleet", "gateway"]
    proc = ServiceProcess(name, argv, env, fleet.state_dir / "logs" / f"{name}.log")
    proc.start()
    stack.callback(proc.wait_or_kill, 20)
    stack.callback(proc.signal, signal.SIGTERM)
    url = f"http://{fleet.config.gateway.host}:{port}"
    wait_http_ok(f"{url}/healthz", 60, proc)
    wait_for(
        lambda: httpx.get(f"{url}/v1/nodes", headers=fleet.cluster_auth).json()["nodes"],
        f"{name} sees the node",
    )
    return url, proc


@pytest.fixture(scope="module")
def gateways(fleet: LocalCluster) -> Iterator[list[str]]:
    """The cluster's gateway (Envoy's data plane) and two more: one of each data plane."""
    with ExitStack() as stack:
        others = [
            start_gateway(fleet, f"gateway-{n}", stack, plane)[0]
            for n, plane in ((2, "python"), (3, "envoy"))
        ]
        yield [fleet.gateway_url, *others]


def infer(url: str, key: str, request_id: str) -> int:
    headers = {**auth(key), "X-Request-ID": request_id}
    return httpx.post(
        f"{url}/v2/models/simple/infer", json=simple_body(1), headers=headers, timeout=60
    ).status_code


@pytest.mark.parametrize("count", [2, 3])
def test_gateways_on_one_ledger_never_serve_more_than_the_deposit(
    fleet: LocalCluster, gateways: list[str], count: int
) -> None:
    user, key = funded_user(fleet, credit=DEPOSIT)
    for url in gateways[:count]:
        # Each gateway loads new keys within a refresh: wait until all know this one.
        wait_for(
            lambda url=url: httpx.get(f"{url}/v1/credit", headers=auth(key)).status_code == 200, "the key"
        )
    targets = list(itertools.islice(itertools.cycle(gateways[:count]), REQUESTS))

    with ThreadPoolExecutor(64) as pool:
        statuses = list(
            pool.map(lambda job: infer(job[1], key, f"shared-{count}-{job[0]}"), enumerate(targets))
        )
    served = statuses.count(200)
    assert set(statuses) <= {200, 402}, sorted(set(statuses))
    assert 0 < served <= DEPOSIT // PRICE, f"{count} gateways served {served} on a deposit for {DEPOSIT}"
    assert statuses.count(402) == REQUESTS - served

    chain = connect(fleet.config, signing=False)
    with ledger(fleet) as book:
        wait_for(lambda: book.unsettled_by_account().get(user.address, 0) == 0, "all settled", 90)
        charged = sum(charge.amount for charge in book.usage(user.address, limit=2 * REQUESTS))
    assert charged == served * PRICE, "ledger = served x price"
    assert DEPOSIT - chain.deposit_of(user.address) == charged, "chain = ledger"


def test_a_dead_gateways_lease_lapses_and_its_credit_serves_elsewhere(fleet: LocalCluster) -> None:
    user, key = funded_user(fleet, credit=40)
    with ExitStack() as stack:
        doomed, doomed_proc = start_gateway(fleet, "gateway-doomed", stack)
        assert infer(doomed, key, "before-death") == 200
        with ledger(fleet) as book:
            held = book.leased(user.address)
        assert held > 0, "the gateway holds a lease beyond the one request it served"
        doomed_proc.signal(signal.SIGKILL)  # no chance to give its lease back
        doomed_proc.wait_or_kill(10)
    # Until the lease lapses, the other gateway serves only what the dead one did not hold.
    statuses = [infer(fleet.gateway_url, key, f"after-death-{n}") for n in range(40)]
    served_before_lapse = statuses.count(200)
    assert served_before_lapse == 40 - PRICE - held, "the dead gateway's lease still counts"
    assert statuses[served_before_lapse:] == [402] * (40 - served_before_lapse)
    # Once lapsed (its time to live, payments.lease_ttl_s), what it held is free again.
    wait_for(
        lambda: infer(fleet.gateway_url, key, f"after-lapse-{time.monotonic()}") == 200,
        "the dead gateway's lease lapses",
        timeout_s=fleet.config.payments.lease_ttl_s + 20,
    )
    rest = [infer(fleet.gateway_url, key, f"rest-{n}") for n in range(40)]
    served = 1 + served_before_lapse + 1 + rest.count(200)
    assert served == 40 // PRICE, "every unit of the deposit bought one inference, no more"
    with ledger(fleet) as book:
        assert sum(charge.amount for charge in book.usage(user.address, limit=200)) == 40
