"""The paid fast path's authorizer: only Envoy may call it; a hold is charged on a 200, freed on
anything else, and freed when its commit never comes. (The real thing, with Envoy, a ledger and
a chain: tests/e2e/test_payments.py on the Envoy data plane.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tritonfleet.gateway.errors import ApiKeyRefused
from tritonfleet.gateway.http.authorizer import HOLD_HEADER, SECRET_HEADER, STATUS_HEADER, Authorizer
from tritonfleet.gateway.paid import Charged
from tritonfleet.payments.money import Credit

SECRET = "envoys-secret"
ENVOY = {SECRET_HEADER: SECRET, "Authorization": "Bearer good"}


@dataclass
class FakeHold:
    request_id: str
    model: str
    version: str | None
    events: list[str] = field(default_factory=list)

    async def reserve(self) -> None:
        self.events.append("reserved")

    async def charge(self) -> Charged:
        self.events.append("charged")
        return Charged(Credit(3), Credit(97))

    def release(self) -> None:
        self.events.append("released")


class FakePaid:
    """What the authorizer asks of the paid path (gateway/paid.py), recorded."""

    def __init__(self) -> None:
        self.holds: list[FakeHold] = []

    def authenticate(self, authorization: str | None) -> str:
        if authorization != "Bearer good":
            raise ApiKeyRefused("unknown or revoked API key")
        return "payer"

    def hold(
        self, payer: str, request_id: str, model: str, version: str | None, from_client: bool
    ) -> FakeHold:
        held = FakeHold(request_id, model, version)
        self.holds.append(held)
        return held


@pytest.fixture
async def authorizer() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], FakePaid]]:
    paid = FakePaid()
    app = Authorizer(paid, SECRET, retry_after_s=1, hold_s=0.2).app()  # type: ignore[arg-type]
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client, paid
    await client.close()


async def authorize(client: TestClient[Any, Any], path: str, **headers: str) -> Any:
    return await client.post(f"/authorize{path}", headers={**ENVOY, **headers})


async def test_a_call_without_envoys_secret_is_refused(authorizer: Any) -> None:
    client, paid = authorizer
    for call in ("/authorize/v2/models/simple/infer", "/commit"):
        answer = await client.post(call, headers={"Authorization": "Bearer good", SECRET_HEADER: "guess"})
        assert answer.status == 403
    assert paid.holds == []


async def test_a_held_request_is_charged_on_200_and_its_answer_says_what_it_cost(authorizer: Any) -> None:
    client, paid = authorizer
    allowed = await authorize(client, "/v2/models/simple/versions/2/infer", **{"X-Request-ID": "mine"})
    assert allowed.status == 200 and allowed.headers[HOLD_HEADER] == "mine"
    (held,) = paid.holds
    assert (held.model, held.version, held.events) == ("simple", "2", ["reserved"])
    committed = await client.post(
        "/commit", headers={SECRET_HEADER: SECRET, "X-Request-ID": "mine", STATUS_HEADER: "200"}
    )
    assert committed.status == 200
    assert (
        committed.headers["X-Tritonfleet-Charge"],
        committed.headers["X-Tritonfleet-Credit-Remaining"],
    ) == ("3", "97")
    assert held.events == ["reserved", "charged"]
    again = await client.post(
        "/commit", headers={SECRET_HEADER: SECRET, "X-Request-ID": "mine", STATUS_HEADER: "200"}
    )
    assert again.status == 503, "no hold any more: the answer is withheld, never given uncharged"


async def test_a_failed_inference_frees_its_hold_and_costs_nothing(authorizer: Any) -> None:
    client, paid = authorizer
    allowed = await authorize(client, "/v2/models/simple/infer")
    request_id = allowed.headers[HOLD_HEADER]
    committed = await client.post(
        "/commit", headers={SECRET_HEADER: SECRET, "X-Request-ID": request_id, STATUS_HEADER: "503"}
    )
    assert committed.status == 200 and "X-Tritonfleet-Charge" not in committed.headers
    assert paid.holds[0].events == ["reserved", "released"]


async def test_a_refusal_is_the_clients_answer_and_holds_nothing(authorizer: Any) -> None:
    client, paid = authorizer
    refused = await authorize(client, "/v2/models/simple/infer", Authorization="Bearer bad")
    assert refused.status == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert (
        HOLD_HEADER not in refused.headers and (await refused.json())["error"] == "unknown or revoked API key"
    )
    bad_id = await authorize(client, "/v2/models/simple/infer", **{"X-Request-ID": "x" * 129})
    assert bad_id.status == 400
    assert paid.holds == []


async def test_a_hold_whose_commit_never_comes_is_freed(authorizer: Any) -> None:
    client, paid = authorizer
    await authorize(client, "/v2/models/simple/infer")
    await asyncio.sleep(0.4)
    assert paid.holds[0].events == ["reserved", "released"]
