"""The gateway's HTTP routes over fake Tritons: what a client of the cluster sees, answers and
errors, in Triton's own shape."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.gateway.fakes import CLUSTER_TOKEN, FakeScheduler, echo, invalid, refusing_node, slow, unavailable
from tests.gateway.http.conftest import StartGateway, StartTriton
from tests.scheduler.fakes import node
from tritonfleet.gateway.http.routes import NODE_HEADER
from tritonfleet.protocol import NodeHealth
from tritonfleet.triton_admin import ADMIN_HEADER, admin_key

INFER = "/v2/models/simple/infer"


def retries(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith("tritonfleet_gateway_retries_total "):
            return float(line.split()[1])
    raise AssertionError("no retries counter in /metrics")


async def test_an_inference_passes_through_unchanged_with_its_request_id_and_node(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    triton = await tritons(echo)
    client, _ = await gateway([triton.node("a")])
    body = bytes(range(256)) * 10
    response = await client.post(
        INFER, data=body, headers={"X-Request-ID": "r-1", "Content-Type": "application/octet-stream"}
    )
    assert response.status == 200
    assert await response.read() == b"answer to " + body
    assert (response.headers["X-Request-ID"], response.headers[NODE_HEADER]) == ("r-1", "a")
    assert response.headers["Content-Type"] == "application/octet-stream"
    [received] = triton.received
    assert (received.path_qs, received.body, received.headers["X-Request-ID"]) == (INFER, body, "r-1")


async def test_a_request_without_an_id_gets_one_that_the_node_and_the_client_both_see(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    triton = await tritons(echo)
    client, _ = await gateway([triton.node("a")])
    response = await client.post(INFER, data=b"{}")
    request_id = response.headers["X-Request-ID"]
    assert uuid.UUID(request_id).version == 7
    assert triton.received[0].headers["X-Request-ID"] == request_id


async def test_a_refused_node_is_ejected_so_the_next_request_goes_straight_to_the_live_one(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    live = await tritons(echo)
    client, core = await gateway([refusing_node("a-dead"), live.node("b-live")])
    for _ in range(2):
        response = await client.post(INFER, data=b"{}")
        assert (response.status, response.headers[NODE_HEADER]) == (200, "b-live")
    assert core.routing.ejector.ejected() == {"a-dead"}
    metrics = await (await client.get("/metrics")).text()
    assert retries(metrics) == 1, "only the first request met the dead node"
    assert len(live.received) == 2


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_a_node_that_cannot_answer_for_its_triton_is_retried_on_another(
    tritons: StartTriton, gateway: StartGateway, status: int
) -> None:
    """503 from a starting Triton; 502 and 504 from a node's manager whose Triton failed."""

    async def failing(request: web.Request, body: bytes) -> web.Response:
        return web.Response(status=status, text='{"error":"no"}', content_type="application/json")

    starting, live = await tritons(failing), await tritons(echo)
    client, core = await gateway([starting.node("a"), live.node("b")])
    response = await client.post(INFER, data=b"{}")
    assert (response.status, response.headers[NODE_HEADER]) == (200, "b")
    assert len(starting.received) == 1
    assert core.routing.ejector.ejected() == {"a"}


async def test_a_node_error_like_400_is_relayed_with_the_node_and_not_retried(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    refusing, live = await tritons(invalid), await tritons(echo)
    client, _ = await gateway([refusing.node("a"), live.node("b")])
    response = await client.post(INFER, data=b"{}", headers={"X-Request-ID": "r-2"})
    assert response.status == 400
    assert await response.json() == {"error": "expected 2 inputs but got 1"}
    assert (response.headers["X-Request-ID"], response.headers[NODE_HEADER]) == ("r-2", "a")
    assert live.received == []


async def test_with_every_node_failing_the_answer_is_503_with_retry_after_in_tritons_shape(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    starting = await tritons(unavailable)
    client, _ = await gateway([refusing_node("a"), starting.node("b")], retry_after_s=7)
    response = await client.post(INFER, data=b"{}", headers={"X-Request-ID": "r-3"})
    assert response.status == 503
    assert (response.headers["Retry-After"], response.headers["X-Request-ID"]) == ("7", "r-3")
    assert NODE_HEADER not in response.headers
    error = await response.json()
    assert list(error) == ["error"]
    assert error["error"].startswith("no node could serve model 'simple' now; last failure: node b")


async def test_max_attempts_bounds_the_nodes_one_request_tries(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    starting = [await tritons(unavailable) for _ in range(3)]
    client, _ = await gateway([triton.node(f"n{i}") for i, triton in enumerate(starting)], max_attempts=2)
    response = await client.post(INFER, data=b"{}")
    assert response.status == 503
    assert [len(triton.received) for triton in starting] == [1, 1, 0]


async def test_a_node_too_slow_for_the_request_timeout_gives_504_and_is_not_retried(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    stuck, live = await tritons(slow), await tritons(echo)
    # Long enough for the request to reach the stuck node on a loaded machine.
    client, core = await gateway([stuck.node("a"), live.node("b")], request_timeout_s=1.0)
    response = await client.post(INFER, data=b"{}")
    assert response.status == 504
    assert await response.json() == {"error": "node a did not answer within the deadline"}
    assert (len(stuck.received), live.received) == (1, [])
    scheduler = core.routing.scheduler
    assert isinstance(scheduler, FakeScheduler) and scheduler.core.in_flight("a") == 0


async def test_a_hung_node_is_hedged_around_within_the_attempt_timeout_and_ejected(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    hung, live = await tritons(slow), await tritons(echo)
    client, core = await gateway(
        [hung.node("a"), live.node("b")], attempt_timeout_floor_s=0.1, attempt_timeout_ceiling_s=0.2
    )
    response = await client.post(INFER, data=b"{}")
    assert response.status == 200 and response.headers[NODE_HEADER] == "b"
    assert core.routing.ejector.ejected() == {"a"}
    metrics = await (await client.get("/metrics")).text()
    assert "tritonfleet_gateway_hedges_total 1.0" in metrics
    assert 'tritonfleet_gateway_upstream_requests_total{node="a",outcome="late"} 1.0' in metrics


async def test_beyond_the_limits_and_the_queue_the_answer_is_503_with_retry_after_at_once(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    hung = await tritons(slow)
    client, _ = await gateway(
        [hung.node("a")], max_in_flight_per_node=1, max_queued=1, retry_after_s=4, request_timeout_s=5
    )
    # One in flight on the only node, one queued for it: the third is refused.
    held = [asyncio.ensure_future(client.post(INFER, data=b"{}")) for _ in range(2)]
    # Time for both to reach the gateway (the first its node) on a loaded machine.
    await asyncio.sleep(0.3)
    assert len(hung.received) == 1
    response = await client.post(INFER, data=b"{}", headers={"X-Request-ID": "r-9"})
    assert response.status == 503
    assert (response.headers["Retry-After"], response.headers["X-Request-ID"]) == ("4", "r-9")
    assert await response.json() == {
        "error": "every node serving model 'simple' is at its limit of requests in flight and the "
        "queue is full; retry later"
    }
    for request in held:
        request.cancel()
    await asyncio.gather(*held, return_exceptions=True)


async def test_an_unknown_model_is_404_in_tritons_words(tritons: StartTriton, gateway: StartGateway) -> None:
    triton = await tritons(echo)
    client, _ = await gateway([triton.node("a")])
    response = await client.post("/v2/models/x/infer", data=b"{}", headers={"X-Request-ID": "r-4"})
    assert response.status == 404
    assert await response.json() == {"error": "Request for unknown model: 'x' is not found"}
    assert response.headers["X-Request-ID"] == "r-4"
    assert triton.received == []


async def test_an_unknown_version_is_404_in_tritons_words(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    triton = await tritons(echo)
    client, _ = await gateway([triton.node("a")])
    response = await client.post("/v2/models/simple/versions/2/infer", data=b"{}")
    assert response.status == 404
    assert await response.json() == {"error": "Request for unknown model: 'simple' version 2 is not found"}


async def test_a_version_that_is_not_a_number_is_400(tritons: StartTriton, gateway: StartGateway) -> None:
    triton = await tritons(echo)
    client, _ = await gateway([triton.node("a")])
    response = await client.post("/v2/models/simple/versions/one/infer", data=b"{}")
    assert response.status == 400
    assert await response.json() == {"error": "invalid version 'one' for model 'simple': expected a number"}
    assert triton.received == []


async def test_a_body_over_max_body_bytes_is_413_and_one_of_exactly_that_size_passes(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    triton = await tritons(echo)
    client, _ = await gateway([triton.node("a")], max_body_bytes=16)
    too_large = await client.post(INFER, data=b"x" * 17)
    assert too_large.status == 413
    assert await too_large.json() == {"error": "request body exceeds 16 bytes"}
    at_limit = await client.post(INFER, data=b"x" * 16)
    assert at_limit.status == 200
    assert [received.body for received in triton.received] == [b"x" * 16]


async def test_tritons_500_for_an_unparseable_body_is_answered_400_with_its_message(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    unparseable = b'{"error":"failed to parse the request JSON buffer: Invalid value. at 0"}'

    async def triton_2_51(request: web.Request, body: bytes) -> web.Response:
        return web.Response(status=500, body=unparseable)

    triton = await tritons(triton_2_51)
    client, _ = await gateway([triton.node("a")])
    response = await client.post(INFER, data=b"not json")
    assert (response.status, await response.read()) == (400, unparseable)


async def test_a_nodes_own_500_is_relayed_as_it_is(tritons: StartTriton, gateway: StartGateway) -> None:
    async def broken(request: web.Request, body: bytes) -> web.Response:
        return web.Response(status=500, body=b'{"error":"CUDA out of memory"}')

    triton = await tritons(broken)
    client, _ = await gateway([triton.node("a")])
    response = await client.post(INFER, data=b"{}")
    assert (response.status, await response.read()) == (500, b'{"error":"CUDA out of memory"}')


async def test_readiness_of_a_model_the_node_serves_is_the_nodes_answer(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    triton = await tritons(echo)
    client, _ = await gateway([triton.node("a")])
    response = await client.get("/v2/models/simple/ready")
    assert (response.status, response.headers[NODE_HEADER]) == (200, "a")
    assert triton.received[0].path_qs == "/v2/models/simple/ready"


async def test_readiness_of_an_unknown_model_is_400_model_version_not_ready(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    triton = await tritons(echo)
    client, _ = await gateway([triton.node("a")])
    response = await client.get("/v2/models/x/ready", headers={"X-Request-ID": "r-5"})
    assert response.status == 400
    assert await response.json() == {"error": "Model version not ready"}
    assert response.headers["X-Request-ID"] == "r-5"


async def test_readiness_of_a_model_no_node_can_serve_now_is_400_model_version_not_ready(
    gateway: StartGateway,
) -> None:
    client, _ = await gateway([node("a", "simple", health=NodeHealth.UNHEALTHY)])
    response = await client.get("/v2/models/simple/ready")
    assert response.status == 400
    assert await response.json() == {"error": "Model version not ready"}
    assert "Retry-After" not in response.headers


async def test_the_cluster_is_ready_with_a_node_serving_a_model(gateway: StartGateway) -> None:
    client, _ = await gateway([node("a", "simple")])
    assert (await client.get("/v2/health/ready")).status == 200


async def test_the_cluster_is_not_ready_without_a_healthy_node_serving_a_model(gateway: StartGateway) -> None:
    for nodes in ([], [node("empty")], [node("sick", "simple", health=NodeHealth.UNHEALTHY)]):
        client, _ = await gateway(nodes)
        assert (await client.get("/v2/health/ready")).status == 400, nodes


async def test_the_error_bodies_are_compact_json_as_triton_writes_them(gateway: StartGateway) -> None:
    client, _ = await gateway([])
    response = await client.post("/v2/models/x/infer", data=b"{}")
    text = await response.text()
    assert text == json.dumps({"error": "Request for unknown model: 'x' is not found"}, separators=(",", ":"))


async def test_the_node_list_is_for_holders_of_the_cluster_token_only(gateway: StartGateway) -> None:
    """It holds the nodes' addresses: a client of the gateway's port must not read them."""
    client, _ = await gateway([node("a", "simple")])
    for headers in ({}, {"Authorization": "Bearer some-api-key"}, {"Authorization": CLUSTER_TOKEN}):
        refused = await client.get("/v1/nodes", headers=headers)
        assert refused.status == 401, headers
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert "a-triton" not in await refused.text()
    allowed = await client.get("/v1/nodes", headers={"Authorization": f"Bearer {CLUSTER_TOKEN}"})
    assert [n["node_id"] for n in (await allowed.json())["nodes"]] == ["a"]


async def test_the_repository_index_asks_each_node_with_the_admin_key(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    async def index(request: web.Request, body: bytes) -> web.Response:
        return web.json_response([{"name": "simple", "version": "1", "state": "READY"}])

    triton = await tritons(index)
    client, _ = await gateway([triton.node("a")])
    assert await (await client.post("/v2/repository/index")).json() == [
        {"name": "simple", "version": "1", "state": "READY"}
    ]
    assert triton.received[-1].headers[ADMIN_HEADER] == admin_key(CLUSTER_TOKEN)


async def test_a_body_trickled_in_past_the_request_deadline_is_refused_with_408(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    triton = await tritons(echo)
    client, _ = await gateway([triton.node("a")], request_timeout_s=0.5)

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b" "
            await asyncio.sleep(0.1)

    response = await client.post(INFER, data=trickle())
    assert (response.status, await response.json()) == (
        408,
        {"error": "request body not received within 0.5 s"},
    )
    assert triton.received == []
