"""The token manager over HTTP, on a real ledger and (for balances and the faucet) a real anvil."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from sqlalchemy import MetaData, select

from tests.devnet import CHAIN_ID, deployed_chain, depositor, running_anvil
from tests.fakes import FakeClock
from tritonfleet.config import FleetConfig
from tritonfleet.net import free_port
from tritonfleet.payments.chain.anvil import Anvil
from tritonfleet.payments.chain.client import Chain, ChainUnavailable
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.chain.keys import dev_account
from tritonfleet.payments.ledger.database import create_ledger_engine, sqlite_url
from tritonfleet.payments.ledger.records import NewCharge
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.money import Credit
from tritonfleet.payments.signin import hash_api_key
from tritonfleet.token_manager.api import FAUCET_MAX
from tritonfleet.token_manager.command import create_app

PRICES = {"simple": 1, "digits:2": 3}
TX_HASH = "0x" + "ab" * 32


def fleet_config(dev: bool = True) -> FleetConfig:
    return FleetConfig.model_validate(
        {
            "payments": {"prices": PRICES, "default_price": 2},
            "chain": {"dev": dev, "chain_id": CHAIN_ID},
        }
    )


def nowhere_chain() -> Chain:
    """A chain nobody answers at: for tests that never reach it."""
    return Chain(f"http://127.0.0.1:{free_port()}", CHAIN_ID, dev_account(0))


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://token-manager") as client,
    ):
        yield client


def sign(user: LocalAccount, message: str) -> str:
    return Account.sign_message(encode_defunct(text=message), user.key).signature.to_0x_hex()


async def challenge_for(client: httpx.AsyncClient, user: LocalAccount) -> str:
    response = await client.post("/v1/auth/challenge", json={"address": user.address.lower()})
    assert response.status_code == 200, response.text
    message: str = response.json()["message"]
    return message


async def sign_in(client: httpx.AsyncClient, user: LocalAccount, label: str = "") -> dict[str, Any]:
    message = await challenge_for(client, user)
    body = {"address": user.address, "message": message, "signature": sign(user, message), "label": label}
    response = await client.post("/v1/auth/verify", json=body)
    assert response.status_code == 200, response.text
    issued: dict[str, Any] = response.json()
    return issued


def bearer(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def charge(request_id: str, account: str, amount: int, model: str = "simple") -> NewCharge:
    return NewCharge(request_id, account, model, "1", Credit(amount))


@pytest.fixture
def ledger_clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def ledger(tmp_path: Path, ledger_clock: FakeClock) -> Iterator[Ledger]:
    with Ledger.open(sqlite_url(tmp_path / "ledger.db"), clock=ledger_clock) as opened:
        yield opened


@pytest.fixture
async def client(ledger: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    async with served(create_app(fleet_config(), ledger=ledger, chain=nowhere_chain())) as http:
        yield http


@pytest.fixture
async def chain_client(ledger: Ledger, chain: DevChain) -> AsyncIterator[httpx.AsyncClient]:
    async with served(create_app(fleet_config(), ledger=ledger, chain=chain)) as http:
        yield http


# Sign-in and keys


async def test_a_signed_challenge_earns_a_key_that_works(ledger_url: str) -> None:
    """Challenge, personal_sign, verify: the key issued lists the account's keys (SQLite and PostgreSQL)."""
    user = Account.create()
    with Ledger.open(ledger_url) as ledger:
        async with served(create_app(fleet_config(), ledger=ledger, chain=nowhere_chain())) as client:
            issued = await sign_in(client, user, label="laptop")
            response = await client.get("/v1/keys", headers=bearer(issued["api_key"]))
    assert issued["account"] == user.address
    assert issued["key_id"] == hash_api_key(issued["api_key"])[:16]
    assert response.status_code == 200
    body = response.json()
    assert body["account"] == user.address
    assert [(k["key_id"], k["label"], k["revoked_at"]) for k in body["keys"]] == [
        (issued["key_id"], "laptop", None)
    ]


async def test_only_the_hash_of_a_key_is_stored(ledger_url: str, tmp_path: Path) -> None:
    """After sign-in the ledger holds the key's hash, and its text nowhere, in any table or file."""
    with Ledger.open(ledger_url) as ledger:
        async with served(create_app(fleet_config(), ledger=ledger, chain=nowhere_chain())) as client:
            issued = await sign_in(client, Account.create())
    stored = stored_text(ledger_url, tmp_path)
    assert hash_api_key(issued["api_key"]) in stored
    assert issued["api_key"] not in stored


def stored_text(ledger_url: str, folder: Path) -> str:
    """Every row of every ledger table, and the bytes of any SQLite file (the database, its WAL)."""
    engine = create_ledger_engine(ledger_url)
    try:
        tables = MetaData()
        tables.reflect(engine)
        with engine.connect() as connection:
            rows = repr([connection.execute(select(table)).all() for table in tables.sorted_tables])
    finally:
        engine.dispose()
    files = [file.read_bytes().decode("latin-1") for file in folder.glob("ledger.db*")]
    return "\n".join([rows, *files])


async def test_a_replayed_signature_is_refused(client: httpx.AsyncClient) -> None:
    """The same signed challenge sent twice earns one key; the second try is 401."""
    user = Account.create()
    message = await challenge_for(client, user)
    body = {"address": user.address, "message": message, "signature": sign(user, message)}
    assert (await client.post("/v1/auth/verify", json=body)).status_code == 200
    replay = await client.post("/v1/auth/verify", json=body)
    assert replay.status_code == 401
    assert "no live challenge" in replay.json()["error"]


async def test_an_expired_or_foreign_signature_is_refused(ledger: Ledger, anvil: Anvil) -> None:
    """A challenge signed after its TTL, or signed by another address (no contract wallet, as the
    chain tells), is 401."""
    user, stranger = Account.create(), Account.create()
    clock = FakeClock()
    chain = Chain(anvil.rpc_url, CHAIN_ID, dev_account(0))
    app = create_app(fleet_config(), ledger=ledger, chain=chain, clock=clock)
    async with served(app) as client:
        message = await challenge_for(client, user)
        foreign = {"address": user.address, "message": message, "signature": sign(stranger, message)}
        assert (await client.post("/v1/auth/verify", json=foreign)).status_code == 401
        message = await challenge_for(client, user)
        clock.advance(fleet_config().token_manager.challenge_ttl_s + 1)
        late = {"address": user.address, "message": message, "signature": sign(user, message)}
        response = await client.post("/v1/auth/verify", json=late)
    assert response.status_code == 401
    assert set(response.json()) == {"error"}


async def test_a_malformed_address_or_body_is_400(client: httpx.AsyncClient) -> None:
    """A challenge for a non-address, or a body missing its fields, is 400 in the error shape."""
    bad_address = await client.post("/v1/auth/challenge", json={"address": "0x1234"})
    assert bad_address.status_code == 400
    assert "not an Ethereum address" in bad_address.json()["error"]
    missing = await client.post("/v1/auth/verify", json={"address": Account.create().address})
    assert missing.status_code == 400
    assert "message" in missing.json()["error"]


async def test_a_missing_unknown_or_revoked_key_is_401(client: httpx.AsyncClient) -> None:
    """No key, another scheme, an unknown key and a revoked key are all 401 with WWW-Authenticate."""
    issued = await sign_in(client, Account.create())
    revoked = await client.delete(f"/v1/keys/{issued['key_id']}", headers=bearer(issued["api_key"]))
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    for headers in (
        {},
        {"Authorization": f"Basic {issued['api_key']}"},
        bearer("tf_unknown"),
        bearer(issued["api_key"]),
    ):
        response = await client.get("/v1/keys", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert set(response.json()) == {"error"}


async def test_one_key_revokes_another_and_lists_it_revoked(client: httpx.AsyncClient) -> None:
    """Revoking a sibling key leaves the caller's key working; the list shows the sibling revoked."""
    user = Account.create()
    first, second = await sign_in(client, user, "a"), await sign_in(client, user, "b")
    assert (await client.delete(f"/v1/keys/{first['key_id']}", headers=bearer(second["api_key"]))).is_success
    keys = (await client.get("/v1/keys", headers=bearer(second["api_key"]))).json()["keys"]
    revoked = {key["key_id"]: key["revoked_at"] is not None for key in keys}
    assert revoked == {first["key_id"]: True, second["key_id"]: False}


async def test_another_accounts_key_cannot_be_revoked(client: httpx.AsyncClient) -> None:
    """DELETE of a key id that is not among the caller's keys is 404, and that key still works."""
    mine, theirs = await sign_in(client, Account.create()), await sign_in(client, Account.create())
    response = await client.delete(f"/v1/keys/{theirs['key_id']}", headers=bearer(mine["api_key"]))
    assert response.status_code == 404
    assert (await client.get("/v1/keys", headers=bearer(theirs["api_key"]))).status_code == 200


async def test_neither_a_key_nor_its_hash_is_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Sign-in, use and revocation log nothing that contains the key or its hash."""
    caplog.set_level(logging.DEBUG)
    issued = await sign_in(client, Account.create())
    await client.get("/v1/keys", headers=bearer(issued["api_key"]))
    await client.delete(f"/v1/keys/{issued['key_id']}", headers=bearer(issued["api_key"]))
    logged = repr([(record.getMessage(), record.__dict__) for record in caplog.records])
    assert issued["api_key"] not in logged
    assert hash_api_key(issued["api_key"]) not in logged


# Balances and the faucet


async def test_the_faucet_deposit_shows_in_the_balance(
    chain_client: httpx.AsyncClient, ledger: Ledger
) -> None:
    """The faucet deposits for an address; its balance shows the deposit less unsettled charges."""
    user = Account.create()
    funded = await chain_client.post("/v1/faucet", json={"address": user.address.lower(), "amount": 1000})
    assert funded.status_code == 200, funded.text
    assert funded.json()["address"] == user.address
    assert funded.json()["deposit"] == 1000
    issued = await sign_in(chain_client, user)
    ledger.record_committed([charge("r1", user.address, 30)])
    response = await chain_client.get("/v1/balance", headers=bearer(issued["api_key"]))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "account": user.address,
        "deposit": 1000,
        "pending_withdrawal": 0,
        "unsettled": 30,
        "reserved": 0,
        "available": 970,
    }


async def test_available_credit_is_never_negative(
    chain_client: httpx.AsyncClient, ledger: Ledger, chain: DevChain
) -> None:
    """Charges beyond the deposit leave available at 0, with the figures that explain it."""
    user = depositor(chain, 10)
    ledger.record_committed([charge("r1", user.address, 30)])
    issued = await sign_in(chain_client, user)
    balance = (await chain_client.get("/v1/balance", headers=bearer(issued["api_key"]))).json()
    assert (balance["deposit"], balance["unsettled"], balance["available"]) == (10, 30, 0)


async def test_the_faucet_is_closed_off_a_dev_chain(ledger: Ledger) -> None:
    """With chain.dev false the faucet answers 403 and says why."""
    async with served(create_app(fleet_config(dev=False), ledger=ledger, chain=nowhere_chain())) as client:
        response = await client.post("/v1/faucet", json={"address": Account.create().address, "amount": 1})
    assert response.status_code == 403
    assert "development chains only" in response.json()["error"]


async def test_the_faucet_caps_each_call(client: httpx.AsyncClient) -> None:
    """An amount above the cap, or not positive, is 400 before the chain is touched."""
    address = Account.create().address
    for amount in (FAUCET_MAX + 1, 0):
        response = await client.post("/v1/faucet", json={"address": address, "amount": amount})
        assert response.status_code == 400, amount


async def test_the_balance_subtracts_what_the_gateways_leases_hold(ledger: Ledger, chain: DevChain) -> None:
    """Credit leased to gateways (for requests in flight or about to come) is not available."""
    user = depositor(chain, 100)
    for holder in ("gateway-a", "gateway-b"):
        ledger.take_lease(
            holder,
            user.address,
            Credit(7),
            deposit=Credit(100),
            pending_withdrawal=Credit(0),
            chain_block=0,
            ttl_s=60,
        )
    async with served(create_app(fleet_config(), ledger=ledger, chain=chain)) as client:
        issued = await sign_in(client, user)
        balance = (await client.get("/v1/balance", headers=bearer(issued["api_key"]))).json()
    assert (balance["reserved"], balance["available"]) == (14, 86)


async def test_the_balance_is_503_while_the_chain_is_down(ledger: Ledger, tmp_path: Path) -> None:
    """With the chain stopped, a balance is 503 with a message that says the chain is unreachable."""
    with running_anvil(tmp_path / "anvil") as node:
        chain = deployed_chain(node)
    async with served(create_app(fleet_config(), ledger=ledger, chain=chain)) as client:
        issued = await sign_in(client, Account.create())
        response = await client.get("/v1/balance", headers=bearer(issued["api_key"]))
    assert response.status_code == 503
    assert "unreachable" in response.json()["error"]


# Prices, usage, settlements


async def test_prices_are_listed_without_a_key(client: httpx.AsyncClient) -> None:
    """GET /v1/prices answers the configured prices, the default and the unit, to anyone."""
    response = await client.get("/v1/prices")
    assert response.json() == {
        "prices": PRICES,
        "default_price": 2,
        "unit": "credit base units per request",
    }


async def test_usage_pages_the_callers_charges_newest_first(
    client: httpx.AsyncClient, ledger: Ledger, ledger_clock: FakeClock
) -> None:
    """Three charges in pages of two: the two newest with a cursor, then the oldest without one."""
    user = Account.create()
    for request_id in ("r1", "r2", "r3"):
        ledger.record_committed([charge(request_id, user.address, 1)])
        ledger_clock.advance(1)
    ledger.record_committed([charge("other", Account.create().address, 5)])
    key = bearer((await sign_in(client, user))["api_key"])
    first = (await client.get("/v1/usage", params={"limit": 2}, headers=key)).json()
    assert [c["request_id"] for c in first["charges"]] == ["r3", "r2"]
    assert first["charges"][0]["state"] == "committed"
    second = (
        await client.get("/v1/usage", params={"limit": 2, "before": first["next_before"]}, headers=key)
    ).json()
    assert [c["request_id"] for c in second["charges"]] == ["r1"]
    assert second["next_before"] is None


async def test_usage_can_be_asked_for_one_api_key(client: httpx.AsyncClient, ledger: Ledger) -> None:
    """Charges name the key that made them, and ?key_id= keeps only that key's."""
    user = Account.create()
    issued = await sign_in(client, user)
    ledger.record_committed(
        [
            NewCharge("mine", user.address, "simple", "1", Credit(1), key_id=issued["key_id"]),
            NewCharge("other-key", user.address, "simple", "1", Credit(1), key_id="0" * 16),
        ]
    )
    key = bearer(issued["api_key"])
    only = (await client.get("/v1/usage", params={"key_id": issued["key_id"]}, headers=key)).json()
    assert [(c["request_id"], c["key_id"]) for c in only["charges"]] == [("mine", issued["key_id"])]


async def test_a_cursor_that_is_not_one_is_400(client: httpx.AsyncClient) -> None:
    """`before` that no page gave out is 400, not a server error."""
    key = bearer((await sign_in(client, Account.create()))["api_key"])
    response = await client.get("/v1/usage", params={"before": "not-a-cursor"}, headers=key)
    assert response.status_code == 400


async def test_settlements_show_the_batch_its_transaction_and_the_callers_share(
    client: httpx.AsyncClient, ledger: Ledger
) -> None:
    """A confirmed batch lists with its tx hash and only the caller's amount; charges read settled."""
    user, other = Account.create(), Account.create()
    ledger.record_committed(
        [charge("a1", user.address, 2), charge("a2", user.address, 3), charge("b1", other.address, 40)]
    )
    batch = ledger.build_batch(max_charges=100)
    assert batch is not None
    ledger.mark_sent(batch.batch_id, TX_HASH, nonce=0)
    ledger.mark_confirmed(batch.batch_id)
    key = bearer((await sign_in(client, user))["api_key"])
    settlements = (await client.get("/v1/settlements", headers=key)).json()["settlements"]
    usage = (await client.get("/v1/usage", headers=key)).json()["charges"]
    assert [(s["batch_id"], s["state"], s["tx_hash"], s["amount"], s["charges"]) for s in settlements] == [
        (batch.batch_id, "confirmed", TX_HASH, 5, 2)
    ]
    assert {(c["state"], c["batch_id"]) for c in usage} == {("settled", batch.batch_id)}


# Operations


async def test_the_openapi_schema_lists_every_endpoint_with_its_response_model(
    client: httpx.AsyncClient,
) -> None:
    """Every route is in the schema with a 200 body schema, and no 422 that is never given."""
    schema = (await client.get("/openapi.json")).json()
    operations = {
        (method.upper(), path): operation
        for path, by_method in schema["paths"].items()
        for method, operation in by_method.items()
    }
    assert set(operations) == {
        ("POST", "/v1/auth/challenge"),
        ("POST", "/v1/auth/verify"),
        ("GET", "/v1/keys"),
        ("DELETE", "/v1/keys/{key_id}"),
        ("GET", "/v1/balance"),
        ("GET", "/v1/prices"),
        ("GET", "/v1/usage"),
        ("GET", "/v1/settlements"),
        ("POST", "/v1/faucet"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
    }
    for key, operation in operations.items():
        assert operation["responses"]["200"]["content"], key
        assert "422" not in operation["responses"], key
    assert operations[("GET", "/v1/balance")]["responses"]["503"]


async def test_healthz_and_metrics_answer(client: httpx.AsyncClient) -> None:
    """/healthz says ok; /metrics counts requests and sign-ins in Prometheus' text format."""
    await sign_in(client, Account.create())
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    metrics = (await client.get("/metrics")).text
    assert 'tritonfleet_token_manager_requests_total{code="200",route="/v1/auth/verify"} 1.0' in metrics
    assert 'tritonfleet_token_manager_sign_ins_total{outcome="issued"} 1.0' in metrics


async def test_a_chain_error_it_did_not_word_is_502_without_its_text(ledger: Ledger) -> None:
    """The text of a raw chain error may carry the RPC URL, and with it a provider's key."""
    app = create_app(fleet_config(), ledger=ledger, chain=nowhere_chain())

    @app.get("/v1/raw-chain-error")
    async def fail() -> None:
        raise ChainUnavailable("POST https://rpc.example/v2/SECRET-KEY: connection refused")

    async with served(app) as client:
        answer = await client.get("/v1/raw-chain-error")
    assert answer.status_code == 502
    assert "SECRET" not in answer.text and "rpc.example" not in answer.text
