from collections import Counter

import pytest

from tritonfleet.protocol import NodeHealth, NodeState

from .fakes import TOKEN, FakeHealthChecker, fleet_config, node, running_service


async def test_openapi_lists_every_endpoint_with_its_responses() -> None:
    async with running_service(FakeHealthChecker()) as (_, client):
        schema = (await client.get("/openapi.json")).json()
    assert set(schema["paths"]) == {"/v1/schedule", "/v1/nodes", "/healthz", "/metrics"}
    responses = schema["paths"]["/v1/schedule"]["get"]["responses"]
    assert set(responses) == {"200", "400", "401", "404", "503"}
    assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ScheduleResponse")
    assert responses["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "HTTPValidationError" not in schema["components"]["schemas"]


async def test_schedule_answers_the_node_and_its_url_for_the_route() -> None:
    async with running_service(FakeHealthChecker([node("a", "m")])) as (_, client):
        triton = await client.get("/v1/schedule", params={"model": "m"})
        manager = await client.get("/v1/schedule", params={"model": "m", "version": "1", "route": "manager"})
    assert triton.status_code == 200
    assert triton.json() == {"node_id": "a", "url": "http://a-triton"}
    assert manager.json() == {"node_id": "a", "url": "http://a-manager"}


async def test_schedule_skips_excluded_nodes() -> None:
    checker = FakeHealthChecker([node("a", "m"), node("b", "m"), node("c", "m")])
    async with running_service(checker) as (_, client):
        picks = [
            (await client.get("/v1/schedule", params={"model": "m", "exclude": "a,c"})).json()["node_id"]
            for _ in range(3)
        ]
    assert picks == ["b", "b", "b"]


async def test_an_unknown_model_is_404_with_tritons_message() -> None:
    async with running_service(FakeHealthChecker([node("a", "m")])) as (_, client):
        response = await client.get("/v1/schedule", params={"model": "m", "version": "7"})
    assert response.status_code == 404
    assert response.json() == {"error": "Request for unknown model: 'm' version 7 is not found"}


async def test_a_known_model_without_a_ready_node_is_503_with_retry_after() -> None:
    checker = FakeHealthChecker([node("a", "m", state=NodeState.DRAINING)])
    async with running_service(checker) as (_, client):
        response = await client.get("/v1/schedule", params={"model": "m"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {"error": "no node is serving model 'm' now"}


@pytest.mark.parametrize(
    ("params", "problem"),
    [({}, "query parameter 'model'"), ({"model": "m", "route": "carrier-pigeon"}, "'route'")],
    ids=["missing model", "bad route"],
)
async def test_invalid_parameters_are_400_in_tritons_shape(params: dict[str, str], problem: str) -> None:
    async with running_service(FakeHealthChecker([node("a", "m")])) as (_, client):
        response = await client.get("/v1/schedule", params=params)
    assert response.status_code == 400
    assert list(response.json()) == ["error"]
    assert problem in response.json()["error"]


async def test_least_outstanding_spreads_by_counting_its_own_recent_choices() -> None:
    checker = FakeHealthChecker([node("a", "m", pending=2), node("b", "m"), node("c", "m", in_flight=1)])
    config = fleet_config(scheduler={"policy": "least_outstanding"}, health={"heartbeat_interval_s": 60})
    async with running_service(checker, config) as (_, client):
        picks = [
            (await client.get("/v1/schedule", params={"model": "m"})).json()["node_id"] for _ in range(9)
        ]
    # b is idle, c reports one in flight, a two queued; after each choice the chosen node counts one more.
    assert picks[:3] == ["b", "b", "c"]
    assert Counter(picks) == {"a": 2, "b": 4, "c": 3}


async def test_nodes_healthz_and_metrics_describe_the_view() -> None:
    checker = FakeHealthChecker([node("a", "m"), node("b", "m", health=NodeHealth.UNHEALTHY)])
    async with running_service(checker) as (_, client):
        await client.get("/v1/schedule", params={"model": "m"})
        await client.get("/v1/schedule", params={"model": "nope"})
        view = (await client.get("/v1/nodes")).json()
        healthz = (await client.get("/healthz")).json()
        metrics = (await client.get("/metrics")).text
    assert [n["node_id"] for n in view["nodes"]] == ["a", "b"]
    assert view["version"] >= 1
    assert healthz == {"status": "ok", "nodes": 2, "schedulable": 1}
    assert 'tritonfleet_scheduler_schedules_total{outcome="ok"} 1.0' in metrics
    assert 'tritonfleet_scheduler_schedules_total{outcome="unknown_model"} 1.0' in metrics
    assert 'tritonfleet_scheduler_choices_total{node_id="a"} 1.0' in metrics
    assert 'tritonfleet_scheduler_nodes{schedulable="false"} 1.0' in metrics
    assert 'tritonfleet_scheduler_http_requests_total{code="404",route="/v1/schedule"} 1.0' in metrics


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}"])
@pytest.mark.parametrize("path", ["/v1/nodes", "/v1/schedule?model=m"])
async def test_node_addresses_are_for_the_cluster_token_holders_only(
    path: str, authorization: str | None
) -> None:
    """Both routes answer node addresses: without the cluster token, 401 in Triton's error shape."""
    async with running_service(FakeHealthChecker([node("a", "m")])) as (_, client):
        headers = {"Authorization": authorization} if authorization else {}
        client.headers.pop("Authorization")
        response = await client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "error": "missing or wrong cluster token: send 'Authorization: Bearer <token>'"
    }
    assert "a-triton" not in response.text


async def test_the_service_follows_changes_in_the_health_checkers_list() -> None:
    checker = FakeHealthChecker([node("a", "m")])
    async with running_service(checker) as (app, client):
        checker.set_nodes([node("b", "m")])
        assert await app.state.watcher.wait_for(lambda nodes: [n.node_id for n in nodes] == ["b"], 1.0)
        response = await client.get("/v1/schedule", params={"model": "m"})
    assert response.json()["node_id"] == "b"
