"""Sign-in binds the origin users sign in at: the EIP-4361 message names the configured public
origin, and a sign-in made for, or sent from a page of, another site is refused. A real token
manager on a real ledger, its chain a real anvil (an EOA's sign-in never reaches it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI

from tests.devnet import CHAIN_ID
from tests.token_manager.test_routes import bearer, served, sign
from tritonfleet.config import ConfigError, FleetConfig, load_config
from tritonfleet.payments.chain.anvil import Anvil
from tritonfleet.payments.chain.client import Chain
from tritonfleet.payments.ledger.database import sqlite_url
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.token_manager.command import create_app
from tritonfleet.web.command import create_app as create_web_app

ORIGIN = "https://fleet.example"
EVIL = "https://evil.example"
TOKEN_MANAGER = "http://tm.test"


def origin_config(**sections: dict[str, Any]) -> FleetConfig:
    given: dict[str, dict[str, Any]] = {
        "token_manager": {"public_origin": ORIGIN},
        "chain": {"chain_id": CHAIN_ID},
    }
    for section, values in sections.items():
        given.setdefault(section, {}).update(values)
    return FleetConfig.model_validate(given)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(sqlite_url(tmp_path / "ledger.db")) as opened:
        yield opened


@pytest.fixture
def reader(anvil: Anvil) -> Chain:
    """The token manager's view of the chain: a key with no funds and no role."""
    return Chain(anvil.rpc_url, CHAIN_ID, Account.create())


@pytest.fixture
async def client(ledger: Ledger, reader: Chain) -> AsyncIterator[httpx.AsyncClient]:
    async with served(create_app(origin_config(), ledger=ledger, chain=reader)) as http:
        yield http


async def challenge(client: httpx.AsyncClient, user: LocalAccount, **headers: str) -> httpx.Response:
    return await client.post("/v1/auth/challenge", json={"address": user.address}, headers=headers)


async def verify(
    client: httpx.AsyncClient, user: LocalAccount, message: str, **headers: str
) -> httpx.Response:
    body = {"address": user.address, "message": message, "signature": sign(user, message)}
    return await client.post("/v1/auth/verify", json=body, headers=headers)


async def test_a_message_signed_for_the_configured_origin_signs_in(client: httpx.AsyncClient) -> None:
    """The message's domain and URI are the public origin, not the service's bind address; signed
    and sent from a page of that origin, it earns a key."""
    user = Account.create()
    answer = await challenge(client, user, origin=ORIGIN)
    assert answer.status_code == 200, answer.text
    message = answer.json()["message"]
    assert message.startswith(
        f"fleet.example wants you to sign in with your Ethereum account:\n{user.address}"
    )
    assert f"\nURI: {ORIGIN}\n" in message and f"\nChain ID: {CHAIN_ID}\n" in message
    assert "127.0.0.1" not in message and "8083" not in message
    issued = await verify(client, user, message, origin=ORIGIN)
    assert issued.status_code == 200, issued.text
    assert (await client.get("/v1/keys", headers=bearer(issued.json()["api_key"]))).status_code == 200


async def test_a_message_rewritten_for_another_site_is_refused(client: httpx.AsyncClient) -> None:
    """A site that shows our challenge to its visitors as its own (domain evil.example, so that
    their wallet does not warn) gets nothing for the signature: 403, naming the site."""
    user = Account.create()
    message = (await challenge(client, user)).json()["message"]
    for relayed in (
        message.replace("fleet.example wants", "evil.example wants"),
        message.replace(f"URI: {ORIGIN}", f"URI: {EVIL}"),
    ):
        answer = await verify(client, user, relayed)
        assert answer.status_code == 403, answer.text
        assert set(answer.json()) == {"error"} and "evil.example" in answer.json()["error"]
    # The genuine challenge was not spent by the forgeries.
    assert (await verify(client, user, message)).status_code == 200


async def test_a_sign_in_relayed_from_another_origin_is_refused(client: httpx.AsyncClient) -> None:
    """A page of another site sending the challenge or the signature is 403; the challenge it
    tried to spend is still good for the user's own page."""
    user = Account.create()
    refused = await challenge(client, user, origin=EVIL)
    assert refused.status_code == 403
    assert refused.json() == {
        "error": f"a sign-in from a page at {EVIL!r}; this service signs in at {ORIGIN} only"
    }
    message = (await challenge(client, user, origin=ORIGIN)).json()["message"]
    for other in (EVIL, "http://fleet.example", "null"):
        assert (await verify(client, user, message, origin=other)).status_code == 403, other
    assert (await verify(client, user, message, origin=ORIGIN)).status_code == 200


async def test_by_default_the_origin_is_the_loopback_web_frontends(ledger: Ledger, reader: Chain) -> None:
    """With no public origin configured, `make up`'s: the web frontend's host and port."""
    config = FleetConfig.model_validate({"web": {"port": 9123}, "chain": {"chain_id": CHAIN_ID}})
    async with served(create_app(config, ledger=ledger, chain=reader)) as client:
        user = Account.create()
        message = (await challenge(client, user)).json()["message"]
        assert message.startswith("127.0.0.1:9123 wants you to sign in")
        assert "\nURI: http://127.0.0.1:9123\n" in message
        assert (await verify(client, user, message, origin="http://127.0.0.1:9123")).status_code == 200


def test_an_origin_off_loopback_must_be_configured(ledger: Ledger, reader: Chain) -> None:
    """A web frontend listening on all interfaces says nothing of the origin browsers see."""
    config = FleetConfig.model_validate({"web": {"host": "0.0.0.0"}, "chain": {"chain_id": CHAIN_ID}})
    with pytest.raises(ConfigError, match=r"token_manager\.public_origin is needed"):
        create_app(config, ledger=ledger, chain=reader)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("https://fleet.example/app", "no path"),
        ("https://fleet.example/", "write it as browsers do, 'https://fleet.example'"),
        ("https://Fleet.example:443", "write it as browsers do, 'https://fleet.example'"),
        ("fleet.example", "http(s)://host[:port]"),
        ("ftp://fleet.example", "http(s)://host[:port]"),
    ],
)
def test_the_public_origin_must_be_an_origin_as_browsers_send_it(given: str, says: str) -> None:
    with pytest.raises(ConfigError, match="public_origin") as refused:
        load_config(None, env={"TRITONFLEET_TOKEN_MANAGER_PUBLIC_ORIGIN": given})
    assert says in str(refused.value)


@asynccontextmanager
async def web_before(token_manager: FastAPI, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The web backend, its upstream calls served by `token_manager` in process."""
    empty = tmp_path / "fleet.toml"
    empty.touch()
    config = load_config(
        empty,
        env={},
        overrides={
            "cluster": {"token": "cluster-secret", "health_urls": [TOKEN_MANAGER]},
            "payments": {"enabled": True},
            "web": {"token_manager_url": TOKEN_MANAGER, "gateway_url": TOKEN_MANAGER},
        },
    )
    web = create_web_app(config, httpx.ASGITransport(app=token_manager))
    async with served(token_manager), served(web) as client:
        yield client


async def test_the_wallet_page_passes_the_browsers_origin_on(
    ledger: Ledger, reader: Chain, tmp_path: Path
) -> None:
    """Through the web backend, a sign-in from the page of our origin earns a key, and one from a
    page of another origin is refused by the token manager, with its words."""
    user = Account.create()
    async with web_before(create_app(origin_config(), ledger=ledger, chain=reader), tmp_path) as web:
        body = {"address": user.address}
        refused = await web.post("/api/wallet/challenge", json=body, headers={"Origin": EVIL})
        assert refused.status_code == 403 and "evil.example" in refused.json()["error"]
        message = (await web.post("/api/wallet/challenge", json=body, headers={"Origin": ORIGIN})).json()[
            "message"
        ]
        signed = {**body, "message": message, "signature": sign(user, message)}
        relayed = await web.post("/api/wallet/verify", json=signed, headers={"Origin": EVIL})
        assert relayed.status_code == 403
        issued = await web.post("/api/wallet/verify", json=signed, headers={"Origin": ORIGIN})
    assert issued.status_code == 200, issued.text
    assert issued.json()["account"] == user.address
