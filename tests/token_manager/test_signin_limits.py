"""Sign-in's limits: a token bucket per client IP, and the bound of the challenge store, over
HTTP on a real ledger (neither needs the chain)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from fastapi import FastAPI

from tests.fakes import FakeClock
from tests.token_manager.test_routes import nowhere_chain, sign
from tritonfleet.config import FleetConfig
from tritonfleet.payments.ledger.database import sqlite_url
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.token_manager.command import create_app
from tritonfleet.token_manager.errors import TooManySignIns
from tritonfleet.token_manager.signin_limit import SignInRateLimit


def limited_config(**token_manager: Any) -> FleetConfig:
    return FleetConfig.model_validate({"token_manager": token_manager})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def ledger(tmp_path: Path, clock: FakeClock) -> Iterator[Ledger]:
    with Ledger.open(sqlite_url(tmp_path / "ledger.db"), clock=clock) as opened:
        yield opened


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    async with app.router.lifespan_context(app):
        yield


def client_at(app: FastAPI, ip: str) -> httpx.AsyncClient:
    """A client the app sees connecting from `ip`."""
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://token-manager")


async def ask_challenge(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/v1/auth/challenge", json={"address": Account.create().address})


# The token bucket


def test_a_client_gets_its_burst_then_its_rate() -> None:
    clock = FakeClock()
    limit = SignInRateLimit(rate_per_s=0.5, burst=3, max_clients=10, clock=clock)
    for _ in range(3):
        limit.take("10.0.0.1")
    with pytest.raises(TooManySignIns) as refused:
        limit.take("10.0.0.1")
    assert refused.value.retry_after_s == 2
    limit.take("10.0.0.2")  # another client has a bucket of its own
    clock.advance(2)
    limit.take("10.0.0.1")
    with pytest.raises(TooManySignIns):
        limit.take("10.0.0.1")


def test_a_refused_request_spends_nothing() -> None:
    clock = FakeClock()
    limit = SignInRateLimit(rate_per_s=1, burst=1, max_clients=10, clock=clock)
    limit.take("10.0.0.1")
    for _ in range(5):
        with pytest.raises(TooManySignIns):
            limit.take("10.0.0.1")
    clock.advance(1)
    limit.take("10.0.0.1")


def test_the_table_of_buckets_is_bounded_and_forgets_idle_clients() -> None:
    clock = FakeClock()
    limit = SignInRateLimit(rate_per_s=1, burst=5, max_clients=100, clock=clock)
    for n in range(10_000):
        limit.take(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
        assert len(limit) <= 100
    # Once a bucket has had time to refill it is as good as none, and is dropped.
    clock.advance(5)
    limit.take("192.0.2.1")
    assert len(limit) == 1


def test_a_full_table_forgets_the_client_seen_least_recently() -> None:
    clock = FakeClock()
    limit = SignInRateLimit(rate_per_s=1, burst=1, max_clients=2, clock=clock)
    limit.take("10.0.0.1")
    limit.take("10.0.0.2")
    limit.take("10.0.0.3")  # the table holds two: 10.0.0.1, seen least recently, is forgotten
    limit.take("10.0.0.1")  # and comes back with a fresh burst, as 10.0.0.2 is forgotten
    with pytest.raises(TooManySignIns):
        limit.take("10.0.0.3")  # still remembered, its burst spent


# Over HTTP


async def test_a_client_over_its_rate_is_answered_429_with_retry_after(
    ledger: Ledger, clock: FakeClock
) -> None:
    config = limited_config(signin_rate_per_s=0.5, signin_burst=3)
    app = create_app(config, ledger=ledger, chain=nowhere_chain(), clock=clock)
    user = Account.create()
    async with running(app), client_at(app, "198.51.100.7") as busy, client_at(app, "203.0.113.9") as other:
        message = (await busy.post("/v1/auth/challenge", json={"address": user.address})).json()["message"]
        body = {"address": user.address, "message": message, "signature": sign(user, message)}
        assert (await busy.post("/v1/auth/verify", json=body)).status_code == 200
        assert (await ask_challenge(busy)).status_code == 200

        # Verification counts as much as a challenge: both are sign-in requests.
        for refused in (await ask_challenge(busy), await busy.post("/v1/auth/verify", json=body)):
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == "2"
            assert refused.json() == {"error": "too many sign-in requests from 198.51.100.7; retry in 2 s"}
        assert (await ask_challenge(other)).status_code == 200

        clock.advance(2)
        assert (await ask_challenge(busy)).status_code == 200
        metrics = (await busy.get("/metrics")).text
    assert 'tritonfleet_token_manager_sign_ins_total{outcome="rate_limited"} 2.0' in metrics


async def test_other_endpoints_are_not_sign_in_limited(ledger: Ledger, clock: FakeClock) -> None:
    app = create_app(limited_config(signin_burst=1), ledger=ledger, chain=nowhere_chain(), clock=clock)
    async with running(app), client_at(app, "198.51.100.7") as client:
        assert (await ask_challenge(client)).status_code == 200
        assert (await ask_challenge(client)).status_code == 429
        assert (await client.get("/v1/prices")).status_code == 200


async def test_a_full_challenge_store_is_answered_503_until_a_challenge_is_used(
    ledger: Ledger, clock: FakeClock
) -> None:
    config = limited_config(challenge_max=2, challenge_ttl_s=300)
    app = create_app(config, ledger=ledger, chain=nowhere_chain(), clock=clock)
    user = Account.create()
    async with running(app), client_at(app, "198.51.100.7") as client:
        message = (await client.post("/v1/auth/challenge", json={"address": user.address})).json()["message"]
        clock.advance(100)
        assert (await ask_challenge(client)).status_code == 200

        full = await ask_challenge(client)
        assert full.status_code == 503
        assert full.headers["Retry-After"] == "200"  # when the first challenge expires
        assert "2 sign-ins are under way" in full.json()["error"]

        # The challenges already out still work, and using one makes room.
        body = {"address": user.address, "message": message, "signature": sign(user, message)}
        assert (await client.post("/v1/auth/verify", json=body)).status_code == 200
        assert (await ask_challenge(client)).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert 'tritonfleet_token_manager_sign_ins_total{outcome="challenges_full"} 1.0' in metrics
