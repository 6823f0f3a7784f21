"""`POST /v2/repository/models/{m}/load|unload` over fake Tritons: who is asked, with what, and
the one answer the client gets."""

from __future__ import annotations

import json

from aiohttp import web

from tests.gateway.fakes import CLUSTER_TOKEN, Behaviour, refusing_node
from tests.gateway.http.conftest import StartGateway, StartTriton
from tritonfleet.triton_admin import ADMIN_HEADER, admin_key

OPERATOR = {"Authorization": f"Bearer {CLUSTER_TOKEN}"}
LOAD = "/v2/repository/models/simple/load"
OVERRIDE = json.dumps({"parameters": {"config": '{"max_batch_size":16}'}}).encode()
NO_VERSION = "load failed for model 'simple': at least one version must be available\n"


def repository(*models: str, status: int = 200, error: str = "") -> Behaviour:
    """A Triton whose repository holds `models`, answering load and unload with `status`."""

    async def behave(request: web.Request, body: bytes) -> web.Response:
        if request.path == "/v2/repository/index":
            return web.json_response([{"name": name} for name in models])
        text = json.dumps({"error": error}) if error else ""
        return web.Response(status=status, text=text, content_type="application/json")

    return behave


async def test_a_load_goes_to_every_node_holding_the_model_as_the_client_wrote_it(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    first, second = await tritons(repository("simple")), await tritons(repository("simple"))
    other = await tritons(repository("digits"))
    client, _ = await gateway([first.node("a"), second.node("b"), other.node("c", "digits")])
    answer = await client.post(LOAD, data=OVERRIDE, headers=OPERATOR)
    assert (answer.status, await answer.read()) == (200, b"")
    assert answer.headers["Content-Type"].startswith("application/json")
    for triton in (first, second):
        index, load = triton.received
        assert (index.path_qs, load.path_qs, load.body) == ("/v2/repository/index", LOAD, OVERRIDE)
        assert load.headers[ADMIN_HEADER] == admin_key(CLUSTER_TOKEN)
        assert "Authorization" not in load.headers, "the operator's token stays at the gateway"
    assert [r.path_qs for r in other.received] == ["/v2/repository/index"]


async def test_a_partial_failure_names_the_failing_node_and_its_reason(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    good = await tritons(repository("simple"))
    bad = await tritons(repository("simple", status=400, error=NO_VERSION))
    client, _ = await gateway([good.node("a"), bad.node("b")])
    answer = await client.post(LOAD, data=OVERRIDE, headers=OPERATOR)
    assert answer.status == 400
    assert await answer.json() == {
        "error": "failed to load 'simple' on 1 of 2 nodes: "
        "b: load failed for model 'simple': at least one version must be available; loaded on a",
        "failed_nodes": "b",
    }


async def test_the_same_failure_everywhere_is_tritons_own_answer(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    """A model no repository holds: every node is asked, and answers alike."""
    unknown = "failed to load 'nope', failed to poll from model repository"
    nodes = [(await tritons(repository("simple", status=500, error=unknown))).node(n) for n in ("a", "b")]
    client, _ = await gateway(nodes)
    answer = await client.post("/v2/repository/models/nope/load", headers=OPERATOR)
    assert (answer.status, await answer.json()) == (500, {"error": unknown})


async def test_a_node_that_cannot_be_reached_is_named_but_not_its_address(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    live = await tritons(repository("simple"))
    dead = refusing_node("b")
    client, _ = await gateway([live.node("a"), dead])
    answer = await client.post("/v2/repository/models/simple/unload", headers=OPERATOR)
    body = await answer.json()
    assert answer.status == 503
    assert (
        body["error"] == "failed to unload 'simple' on 1 of 2 nodes: b: could not be reached; unloaded on a"
    )
    assert dead.triton_http_url.split("//")[1] not in json.dumps(body)


async def test_without_the_cluster_token_nothing_reaches_a_node(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    triton = await tritons(repository("simple"))
    client, _ = await gateway([triton.node("a")])
    for headers in ({}, {"Authorization": "Bearer a-users-api-key"}):
        answer = await client.post(LOAD, headers=headers)
        assert answer.status == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
        assert "needs the cluster token" in (await answer.json())["error"]
    assert triton.received == []
