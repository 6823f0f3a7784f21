import asyncio
import logging

import httpx
import pytest
import uvicorn

from tritonfleet.config import ConfigError, FleetConfig
from tritonfleet.health.command import create_app, serve
from tritonfleet.net import free_port, http_url
from tritonfleet.protocol import NodeHealth

from .fakes import AUTH, TOKEN, FakeProber, beat_json, fleet_config, owner, register, running

ROUTES = [
    ("POST", "/v1/nodes/register", "n1"),
    ("POST", "/v1/nodes/n1/heartbeat", "n1"),
    ("DELETE", "/v1/nodes/n1", "n1"),
    ("GET", "/v1/nodes", ""),
    ("GET", "/v1/nodes/watch", ""),
]
BAD_AUTH = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}]


@pytest.mark.parametrize(("method", "path", "node_id"), ROUTES)
@pytest.mark.parametrize("headers", BAD_AUTH, ids=["missing", "wrong", "not-bearer"])
async def test_node_routes_without_the_cluster_token_get_401_and_a_warning_without_the_token(
    method: str, path: str, node_id: str, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    async with running() as h:
        body = beat_json("n1") if method == "POST" else None
        with caplog.at_level(logging.WARNING):
            response = await h.anonymous.request(method, path, json=body, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"error": "missing or wrong cluster token"}
        assert (await h.client.get("/v1/nodes")).json()["nodes"] == []
        metrics = (await h.client.get("/metrics")).text
    (record,) = [r for r in caplog.records if "cluster token" in r.getMessage()]
    assert (record.client, record.node_id) == ("10.0.0.7:5555", node_id)
    assert TOKEN not in caplog.text
    assert 'tritonfleet_health_rejected_requests_total{reason="cluster_token"' in metrics


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [("POST", "/v1/nodes/register", b"{not json"), ("GET", "/v1/nodes/watch?timeout_s=-1", None)],
    ids=["malformed-body", "invalid-query"],
)
async def test_an_invalid_request_without_the_token_is_401_not_400(
    method: str, path: str, content: bytes | None
) -> None:
    async with running() as h:
        response = await h.anonymous.request(method, path, content=content)
        assert response.status_code == 401


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/nodes/n1/heartbeat"), ("DELETE", "/v1/nodes/n1")])
async def test_a_call_with_another_nodes_secret_is_403_logged_without_it_and_changes_nothing(
    method: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running() as h:
        await register(h.client, "n1")
        other = await register(h.client, "n2")
        before = (await h.client.get("/v1/nodes")).json()
        body = beat_json("n1", pending=7) if method == "POST" else None
        with caplog.at_level(logging.WARNING):
            response = await h.client.request(method, path, json=body, headers=owner(other))
        assert response.status_code == 403
        assert list(response.json()) == ["error"]
        assert (await h.client.get("/v1/nodes")).json() == before
        metrics = (await h.client.get("/metrics")).text
    (record,) = [r for r in caplog.records if "without its secret" in r.getMessage()]
    assert (record.client, record.node_id) == ("10.0.0.7:5555", "n1")
    assert other not in caplog.text
    assert 'tritonfleet_health_rejected_requests_total{reason="node_secret"' in metrics


async def test_registering_a_live_nodes_id_without_its_secret_is_409_and_with_it_a_refresh() -> None:
    async with running() as h:
        secret = await register(h.client, "n1")
        taken = await h.client.post("/v1/nodes/register", json=beat_json("n1", manager_url="http://x:1"))
        assert taken.status_code == 409
        assert list(taken.json()) == ["error"]
        again = await h.client.post(
            "/v1/nodes/register", json=beat_json("n1", pending=4), headers=owner(secret)
        )
        assert again.json()["node_secret"] == secret
        (node,) = (await h.client.get("/v1/nodes")).json()["nodes"]
        metrics = (await h.client.get("/metrics")).text
    assert (node["manager_url"], node["pending"]) == ("http://n1.mgr:9000", 4)
    assert 'tritonfleet_health_rejected_requests_total{reason="node_id_taken"' in metrics


async def test_register_answers_the_heartbeat_interval_and_ttl_and_lists_the_node() -> None:
    async with running(heartbeat_interval_s=0.5, ttl_s=2.0) as h:
        response = await h.client.post("/v1/nodes/register", json=beat_json("n1", pending=2))
        answer = response.json()
        assert answer.pop("node_secret")
        assert answer == {"node_id": "n1", "heartbeat_interval_s": 0.5, "ttl_s": 2.0}
        listing = (await h.client.get("/v1/nodes")).json()
    (node,) = listing["nodes"]
    assert (node["node_id"], node["health"], node["pending"]) == ("n1", "healthy", 2)
    assert listing["version"] == 1


async def test_a_heartbeat_from_an_unknown_node_is_404_and_does_not_add_it() -> None:
    async with running() as h:
        response = await h.client.post("/v1/nodes/n9/heartbeat", json=beat_json("n9"))
        assert response.status_code == 404
        assert "register" in response.json()["error"]
        nodes = (await h.client.get("/v1/nodes")).json()["nodes"]
    assert nodes == []


async def test_a_heartbeat_with_the_nodes_secret_is_answered_without_it() -> None:
    async with running() as h:
        secret = await register(h.client, "n1")
        response = await h.client.post("/v1/nodes/n1/heartbeat", json=beat_json("n1"), headers=owner(secret))
    assert response.status_code == 200
    assert "node_secret" not in response.json()


async def test_a_heartbeat_whose_path_and_body_ids_differ_is_400() -> None:
    async with running() as h:
        secret = await register(h.client, "n1")
        response = await h.client.post("/v1/nodes/n1/heartbeat", json=beat_json("n2"), headers=owner(secret))
    assert response.status_code == 400
    assert "n2" in response.json()["error"]


@pytest.mark.parametrize(
    "body",
    [{"node_id": "n1"}, {**beat_json("n1"), "pending": -1}, {**beat_json("bad id!")}, [1, 2]],
    ids=["missing-urls", "negative-load", "bad-node-id", "not-an-object"],
)
async def test_an_invalid_body_is_400_with_an_error_string(body: object) -> None:
    async with running() as h:
        response = await h.client.post("/v1/nodes/register", json=body, headers=AUTH)
    assert response.status_code == 400
    assert list(response.json()) == ["error"]
    assert isinstance(response.json()["error"], str)


async def test_deregister_removes_the_node_at_once_and_is_idempotent() -> None:
    async with running() as h:
        secret = await register(h.client, "n1")
        assert (await h.client.delete("/v1/nodes/n1", headers=owner(secret))).status_code == 204
        assert (await h.client.get("/v1/nodes")).json()["nodes"] == []
        assert (await h.client.delete("/v1/nodes/n1", headers=owner(secret))).status_code == 204
        assert (await h.client.delete("/v1/nodes/n1")).status_code == 204


async def test_the_list_filters_by_model_and_version_and_needs_a_model_for_a_version() -> None:
    async with running() as h:
        await register(h.client, "a", models=[{"name": "digits", "version": "1"}])
        await register(h.client, "b", models=[{"name": "digits", "version": "2"}])
        digits = (await h.client.get("/v1/nodes", params={"model": "digits"})).json()
        v2 = (await h.client.get("/v1/nodes", params={"model": "digits", "version": "2"})).json()
        orphan = await h.client.get("/v1/nodes", params={"version": "2"})
    assert [n["node_id"] for n in digits["nodes"]] == ["a", "b"]
    assert [n["node_id"] for n in v2["nodes"]] == ["b"]
    assert orphan.status_code == 400


async def test_a_node_silent_past_the_ttl_leaves_the_list_within_a_tick() -> None:
    async with running(ttl_s=3.0) as h:
        await register(h.client, "n1")
        h.clock.advance(3.5)
        await asyncio.sleep(0.25)
        assert (await h.client.get("/v1/nodes")).json()["nodes"] == []


async def test_failing_probes_make_a_node_unhealthy_and_a_heartbeat_and_probe_readmit_it() -> None:
    async with running(probe_interval_s=0.01, unhealthy_threshold=2) as h:
        h.prober.healthy = False
        secret = await register(h.client, "n1")
        await asyncio.sleep(0.1)
        assert (await h.client.get("/v1/nodes")).json()["nodes"][0]["health"] == NodeHealth.UNHEALTHY
        h.prober.healthy = True
        await h.client.post("/v1/nodes/n1/heartbeat", json=beat_json("n1"), headers=owner(secret))
        await asyncio.sleep(0.1)
        assert (await h.client.get("/v1/nodes")).json()["nodes"][0]["health"] == NodeHealth.HEALTHY
        assert "tritonfleet_health_probe_failures_total" in (await h.client.get("/metrics")).text


async def test_healthz_and_an_unknown_route_answer_in_the_shared_shapes() -> None:
    async with running() as h:
        assert (await h.client.get("/healthz")).json() == {"status": "ok"}
        missing = await h.client.get("/v2/nope")
    assert missing.status_code == 404
    assert list(missing.json()) == ["error"]


async def test_metrics_count_requests_by_route_template_and_nodes_by_health() -> None:
    async with running() as h:
        secret = await register(h.client, "n1")
        await h.client.post("/v1/nodes/n1/heartbeat", json=beat_json("n1"), headers=owner(secret))
        text = (await h.client.get("/metrics")).text
    assert 'code="200",route="/v1/nodes/{node_id}/heartbeat"' in text
    assert 'tritonfleet_health_nodes{health="healthy"} 1.0' in text
    assert "tritonfleet_health_registry_version 1.0" in text


async def test_the_openapi_schema_lists_every_endpoint_with_its_response_model() -> None:
    async with running() as h:
        schema = (await h.client.get("/openapi.json")).json()
    paths = schema["paths"]
    assert set(paths) == {
        "/v1/nodes/register",
        "/v1/nodes/{node_id}/heartbeat",
        "/v1/nodes/{node_id}",
        "/v1/nodes",
        "/v1/nodes/watch",
        "/healthz",
        "/metrics",
    }
    ok = paths["/v1/nodes/watch"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["$ref"].endswith("/NodeList")
    assert "409" in paths["/v1/nodes/register"]["post"]["responses"]
    assert {"401", "403", "404"} <= set(paths["/v1/nodes/{node_id}/heartbeat"]["post"]["responses"])
    assert "401" in paths["/v1/nodes"]["get"]["responses"]
    heartbeat_params = paths["/v1/nodes/{node_id}/heartbeat"]["post"]["parameters"]
    assert "X-Node-Secret" in {p["name"] for p in heartbeat_params}
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    assert all("422" not in op["responses"] for ops in paths.values() for op in ops.values())


def test_the_service_refuses_to_start_without_a_cluster_token() -> None:
    with pytest.raises(ConfigError, match="no cluster token"):
        serve(FleetConfig())


async def test_the_app_serves_real_http_under_uvicorn_and_its_lifespan_stops_its_tasks() -> None:
    port, prober = free_port(), FakeProber()
    app = create_app(fleet_config(probe_interval_s=0.01), prober=prober)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(500):  # uvicorn has no "started" event to await
            if server.started:
                break
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=http_url("127.0.0.1", port)) as client:
            assert (await client.post("/v1/nodes/register", json=beat_json("n1"), headers=AUTH)).is_success
            await asyncio.sleep(0.05)
            assert (await client.get("/v1/nodes", headers=AUTH)).json()["nodes"][0]["node_id"] == "n1"
    finally:
        server.should_exit = True
        await serving
    probes = len(prober.probed)
    assert probes > 0
    await asyncio.sleep(0.05)
    assert len(prober.probed) == probes  # the probe task died with the lifespan
