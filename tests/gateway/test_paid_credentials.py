"""The paid path takes an API key as `Bearer <key>` or as Basic's password (tritonclient's
`BasicAuth`, any user), and refuses anything else with a 401 that never repeats the key."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.gateway.test_paid import FAST, key_for, started
from tritonfleet.gateway.errors import ApiKeyRefused
from tritonfleet.gateway.paid import PaidPath
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.ledger.database import sqlite_url
from tritonfleet.payments.ledger.store import Ledger

ACCOUNT = "0x00000000000000000000000000000000000000aa"


@pytest.fixture
async def paid(tmp_path: Path, chain: DevChain) -> AsyncIterator[PaidPath]:
    ledger_file = sqlite_url(tmp_path / "ledger.db")
    with Ledger.open(ledger_file) as ledger:
        path = await started(FAST, ledger_file, ledger, chain)
        yield path
        await path.aclose()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_basic_with_the_key_as_password_is_the_same_payer_as_bearer(paid: PaidPath) -> None:
    key = await key_for(paid, ACCOUNT)
    bearer = paid.authenticate(f"Bearer {key}")
    assert bearer.account == ACCOUNT
    for user in ("", "anyone", ACCOUNT, "0x00000000000000000000000000000000000000bb"):
        assert paid.authenticate(basic(user, key)) == bearer, "the user is not read"


REFUSED = {
    None: "an API key is required: send 'Authorization: Bearer <key>', or Basic with the key",
    "Digest abc": "an API key is required",
    "Basic %%%": "malformed Basic credentials: not base64 of 'user:password'; send the API key",
    "Basic " + base64.b64encode(b"no-colon").decode(): "no ':' between user and password",
    "Basic " + base64.b64encode(b"user:").decode(): "the password is empty",
}


async def test_missing_or_malformed_credentials_are_refused_saying_how_to_send_them(paid: PaidPath) -> None:
    for authorization, message in REFUSED.items():
        with pytest.raises(ApiKeyRefused) as raised:
            paid.authenticate(authorization)
        assert message in str(raised.value) and raised.value.status == 401, authorization


async def test_a_wrong_password_is_an_unknown_key_and_the_key_is_never_echoed(paid: PaidPath) -> None:
    key = await key_for(paid, ACCOUNT)
    for wrong in (basic("user", key + "x"), basic(key, ""), f"Basic {key}"):
        with pytest.raises(ApiKeyRefused) as raised:
            paid.authenticate(wrong)
        assert key not in str(raised.value)
    with pytest.raises(ApiKeyRefused, match=r"^unknown or revoked API key$"):
        paid.authenticate(basic("user", key + "x"))
