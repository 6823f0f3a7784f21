"""Envoy's configuration from the settings and the node view (the real Envoy runs in
tests/e2e/test_envoy.py and in every end-to-end module parametrized over the data planes)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.scheduler.fakes import node
from tritonfleet.config import GatewayConfig, NodeRoute, Policy
from tritonfleet.gateway.envoy import resources
from tritonfleet.gateway.envoy.resources import Files
from tritonfleet.protocol import NodeHealth, NodeState

FILES = Files("/run/xds")


PAID = resources.Authorizing(port=9999, secret="s3cret", timeout_s=11.0)


def route_table(names: list[str], paid: resources.Authorizing | None = None) -> list[dict[str, Any]]:
    table = resources.routes(names, GatewayConfig(), paid)["resources"][0]
    return table["virtual_hosts"][0]["routes"]


def test_each_model_and_model_version_gets_a_cluster_of_the_nodes_serving_it() -> None:
    a = node("a", "simple").model_copy(update={"triton_http_url": "http://10.0.0.1:8000"})
    b = node("b", "simple", "digits").model_copy(update={"triton_http_url": "http://10.0.0.2:8000"})
    members = resources.served([a, b])
    assert {name: [n.node_id for n in nodes] for name, nodes in members.items()} == {
        "model.simple": ["a", "b"],
        "model.simple.v1": ["a", "b"],
        "model.digits": ["b"],
        "model.digits.v1": ["b"],
    }
    (assignment,) = resources.endpoints("model.digits", members["model.digits"], NodeRoute.TRITON)[
        "resources"
    ]
    (endpoint,) = assignment["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"] == {"address": "10.0.0.2", "port_value": 8000}
    assert endpoint["metadata"]["filter_metadata"]["tritonfleet"] == {"node_id": "b"}


def test_nodes_that_cannot_serve_and_names_that_cannot_be_routed_as_they_are_get_no_cluster() -> None:
    sick = node("sick", "simple", health=NodeHealth.UNHEALTHY)
    starting = node("starting", "simple", state=NodeState.STARTING)
    odd = node("odd", "my model")
    assert resources.served([sick, starting, odd]) == {}


def test_the_fast_routes_come_before_the_python_gateway() -> None:
    table = route_table(["model.simple", "model.simple.v1", "grpc.simple"])
    assert [(r["match"].get("path") or r["match"]["prefix"], r["route"]["cluster"]) for r in table] == [
        ("/v2/models/simple/infer", "model.simple"),
        ("/v2/models/simple/versions/1/infer", "model.simple.v1"),
        ("/v2/models/simple/generate", "model.simple"),
        ("/v2/models/simple/versions/1/generate", "model.simple.v1"),
        ("/v2/models/simple/generate_stream", "model.simple"),
        ("/v2/models/simple/versions/1/generate_stream", "model.simple.v1"),
        ("/", resources.PYTHON_HTTP),
    ]
    stream = table[4]["route"]
    assert (stream["timeout"], stream["idle_timeout"]) == ("0s", "60.000s"), "events as long as they come"


def test_a_paid_stream_of_events_goes_to_the_python_gateway_which_charges_its_first_event() -> None:
    paths = [r["match"].get("path") for r in route_table(["model.simple"], PAID)]
    assert paths == ["/v2/models/simple/infer", "/v2/models/simple/generate", None]


def test_paid_fast_routes_are_authorized_and_charged_by_the_python_gateway_the_rest_is_not() -> None:
    fast, _, python = route_table(["model.simple"], PAID)
    assert fast["request_headers_to_remove"] == ["authorization"], "no node sees the API key"
    commit = fast["typed_per_filter_config"]["envoy.filters.http.lua"]["source_code"]["inline_string"]
    assert '"/commit"' in commit and "s3cret" in commit and "TIMEOUT_MS = 11000" in commit
    assert python["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["disabled"]
    (manager, _) = (
        listener["filter_chains"][0]["filters"][0]["typed_config"]
        for listener in resources.bootstrap(
            resources.Ports("0.0.0.0", 1, 2, 4, 5), "/run/admin.sock", FILES, GatewayConfig(), PAID
        )["static_resources"]["listeners"]
    )
    (authz,) = [f for f in manager["http_filters"] if f["name"] == "envoy.filters.http.ext_authz"]
    service = authz["typed_config"]["http_service"]
    assert service["server_uri"]["uri"] == "http://127.0.0.1:9999"
    assert service["authorization_request"]["headers_to_add"] == [
        {"key": "x-tritonfleet-authorizer", "value": "s3cret"}
    ]
    assert not authz["typed_config"]["failure_mode_allow"], "no authorizer, no paid answer"
    assert manager["generate_request_id"] is False, "the authorizer tells a client's id from its own"


def test_a_fast_route_retries_on_another_node_before_any_answer() -> None:
    retry = route_table(["model.simple"])[0]["route"]["retry_policy"]
    # gateway-error: a node's 502-504, and an attempt past its timeout (Envoy retries those on it).
    assert set(retry["retry_on"].split(",")) == {
        "connect-failure",
        "refused-stream",
        "reset",
        "gateway-error",
    }
    assert retry["num_retries"] == GatewayConfig().max_attempts - 1
    assert retry["retry_host_predicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"


@pytest.mark.parametrize(
    ("policy", "balancer", "settings"),
    [
        (Policy.ROUND_ROBIN, "round_robin", {}),
        (Policy.P2C, "least_request", {"choice_count": 2}),
        (Policy.LEAST_OUTSTANDING, "least_request", {"selection_method": "FULL_SCAN"}),
    ],
)
def test_each_policy_maps_onto_an_envoy_balancer(
    policy: Policy, balancer: str, settings: dict[str, Any]
) -> None:
    (cluster,) = resources.clusters(["model.simple"], FILES, GatewayConfig(), policy)["resources"]
    (chosen,) = cluster["load_balancing_policy"]["policies"]
    assert chosen["typed_extension_config"]["name"] == balancer
    assert settings.items() <= chosen["typed_extension_config"]["typed_config"].items()
    assert cluster["eds_cluster_config"]["eds_config"]["path_config_source"]["path"] == FILES.endpoints(
        "model.simple"
    )


def test_a_failing_node_is_ejected_at_once_with_the_gateways_back_off() -> None:
    gw = GatewayConfig(eject_after_failures=1, eject_base_s=2.0, eject_max_s=40.0)
    (cluster,) = resources.clusters(["model.simple"], FILES, gw, Policy.ROUND_ROBIN)["resources"]
    outlier = cluster["outlier_detection"]
    assert outlier["consecutive_local_origin_failure"] == outlier["consecutive_gateway_failure"] == 1
    assert (outlier["base_ejection_time"], outlier["max_ejection_time"]) == ("2.000s", "40.000s")
    assert outlier["enforcing_consecutive_5xx"] == 0, "a model's own 500 is no node failure"


def test_grpc_clusters_reach_tritons_grpc_port_over_http2() -> None:
    a = node("a", "simple").model_copy(
        update={"triton_http_url": "http://10.0.0.1:8000", "triton_grpc_url": "grpc://10.0.0.1:8001"}
    )
    members = resources.served([a])
    assert set(members) == {"model.simple", "model.simple.v1", "grpc.simple", "grpc.simple.v1"}
    (assignment,) = resources.endpoints("grpc.simple", members["grpc.simple"], NodeRoute.MANAGER)["resources"]
    (endpoint,) = assignment["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"] == {"address": "10.0.0.1", "port_value": 8001}
    (cluster,) = resources.clusters(["grpc.simple"], FILES, GatewayConfig(), Policy.P2C)["resources"]
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert "http2_protocol_options" in options["explicit_http_config"]


def grpc_table(names: list[str], fast: bool = True) -> list[dict[str, Any]]:
    table = resources.grpc_routes(names, GatewayConfig(), fast)["resources"][0]
    return table["virtual_hosts"][0]["routes"]


def test_grpc_model_infer_is_routed_on_the_model_the_lua_filter_reads_then_to_python() -> None:
    table = grpc_table(["grpc.simple", "grpc.simple.v1", "model.simple"])
    assert [r["route"]["cluster"] for r in table] == [
        "grpc.simple",
        "grpc.simple.v1",
        resources.PYTHON_GRPC,
        resources.PYTHON_GRPC,
    ]
    unversioned, versioned, python_infer, python_rest = table
    assert unversioned["match"]["headers"] == [
        {"name": resources.MODEL_HEADER, "string_match": {"exact": "simple"}},
        {"name": resources.VERSION_HEADER, "present_match": True, "invert_match": True},
    ]
    assert versioned["match"]["headers"][1] == {
        "name": resources.VERSION_HEADER,
        "string_match": {"exact": "1"},
    }
    assert "unavailable" in unversioned["route"]["retry_policy"]["retry_on"].split(",")
    # Only ModelInfer is buffered and read; streams and the rest pass through as they come.
    assert python_infer["match"] == {"path": resources.GRPC_INFER}
    assert "typed_per_filter_config" not in python_infer
    assert python_rest["typed_per_filter_config"]["envoy.filters.http.buffer"]["disabled"]
    assert [r["route"]["cluster"] for r in grpc_table(["grpc.simple"], fast=False)] == [resources.PYTHON_GRPC]


def test_a_stateful_model_has_no_fast_route_so_the_python_gateway_reads_its_sequence_ids() -> None:
    """HTTP and gRPC alike: only the stateless model's inference goes straight to its nodes."""
    names = ["model.simple", "model.seq", "model.seq.v1", "grpc.simple", "grpc.seq", "grpc.seq.v1"]
    stateful = frozenset({"seq"})
    http = resources.routes(names, GatewayConfig(), None, stateful)["resources"][0]["virtual_hosts"][0]
    assert {r["route"]["cluster"] for r in http["routes"]} == {"model.simple", resources.PYTHON_HTTP}
    grpc = resources.grpc_routes(names, GatewayConfig(), True, stateful)["resources"][0]["virtual_hosts"][0]
    assert [r["route"]["cluster"] for r in grpc["routes"]] == ["grpc.simple", *[resources.PYTHON_GRPC] * 2]


def test_each_attempt_has_its_models_timeout_and_is_hedged_on_it_streams_of_events_are_not() -> None:
    table = resources.routes(
        ["model.simple", "model.latency"], GatewayConfig(), None, attempts_s={"simple": 0.3}
    )
    by_path = {
        r["match"].get("path"): r["route"] for r in table["resources"][0]["virtual_hosts"][0]["routes"]
    }
    infer = by_path["/v2/models/simple/infer"]
    assert infer["retry_policy"]["per_try_timeout"] == "0.300s"
    assert infer["hedge_policy"] == {"hedge_on_per_try_timeout": True}, "the first attempt goes on"
    assert by_path["/v2/models/simple/generate"]["retry_policy"]["per_try_timeout"] == "0.300s"
    assert by_path["/v2/models/latency/infer"]["retry_policy"]["per_try_timeout"] == "10.000s", "no history"
    stream = by_path["/v2/models/simple/generate_stream"]
    assert "per_try_timeout" not in stream["retry_policy"] and "hedge_policy" not in stream


def test_without_hedging_a_late_attempt_is_cut_and_retried_elsewhere() -> None:
    (infer, *_) = resources.routes(["model.simple"], GatewayConfig(hedge=False), None)["resources"][0][
        "virtual_hosts"
    ][0]["routes"]
    assert infer["route"]["retry_policy"]["per_try_timeout"] == "10.000s"
    assert "hedge_policy" not in infer["route"]


def test_grpc_model_infer_has_the_same_attempt_timeout_and_hedging() -> None:
    table = resources.grpc_routes(["grpc.simple"], GatewayConfig(), True, attempts_s={"simple": 0.5})
    route = table["resources"][0]["virtual_hosts"][0]["routes"][0]["route"]
    assert route["retry_policy"]["per_try_timeout"] == "0.500s"
    assert route["hedge_policy"] == {"hedge_on_per_try_timeout": True}
    assert {"gateway-error", "unavailable"} <= set(route["retry_policy"]["retry_on"].split(","))


def test_timeouts_and_gateway_errors_eject_a_node_a_models_500_does_not() -> None:
    (cluster,) = resources.clusters(["model.simple"], FILES, GatewayConfig(), Policy.P2C)["resources"]
    outlier = cluster["outlier_detection"]
    # Local origin: refused, reset, and an attempt past its timeout, hedged or not.
    assert outlier["split_external_local_origin_errors"] is True
    assert outlier["enforcing_consecutive_local_origin_failure"] == 100
    assert outlier["enforcing_consecutive_gateway_failure"] == 100, "502-504 from the node"
    assert outlier["enforcing_consecutive_5xx"] == 0


def test_an_http_cluster_bounds_each_node_and_queues_a_bounded_number_of_requests() -> None:
    gw = GatewayConfig(max_in_flight=100, max_in_flight_per_node=7, max_queued=3)
    (cluster,) = resources.clusters(["model.simple"], FILES, gw, Policy.P2C)["resources"]
    breakers = cluster["circuit_breakers"]
    assert breakers["per_host_thresholds"] == [{"max_connections": 7}], "one request per connection"
    (bounds,) = breakers["thresholds"]
    assert (bounds["max_pending_requests"], bounds["max_requests"], bounds["max_connections"]) == (
        3,
        100,
        100,
    )
    assert bounds["max_retries"] == 100, "failovers and hedges are never what refuses a request"


def test_a_grpc_cluster_bounds_its_requests_by_its_nodes_up_to_the_gateways_limit() -> None:
    gw = GatewayConfig(max_in_flight=100, max_in_flight_per_node=7, max_queued=3)
    three, many = (
        resources.clusters(["grpc.simple"], FILES, gw, Policy.P2C, {"grpc.simple": hosts})["resources"][0]
        for hosts in (3, 50)
    )
    assert three["circuit_breakers"]["thresholds"][0]["max_requests"] == 21
    assert many["circuit_breakers"]["thresholds"][0]["max_requests"] == 100


def local_reply(mappers: list[dict[str, Any]], flag: str) -> dict[str, Any]:
    return next(m for m in mappers if m["filter"].get("response_flag_filter", {}).get("flags") == [flag])


def test_an_overflow_answers_503_with_retry_after_in_tritons_words_http_and_grpc() -> None:
    gw = GatewayConfig(retry_after_s=2)
    (http, grpc) = (
        listener["filter_chains"][0]["filters"][0]["typed_config"]["local_reply_config"]["mappers"]
        for listener in resources.bootstrap(
            resources.Ports("0.0.0.0", 1, 2, 4, 5), "/run/a.sock", FILES, gw, None
        )["static_resources"]["listeners"]
    )
    overloaded = local_reply(http, "UO")
    assert overloaded["headers_to_add"][0]["header"] == {"key": "Retry-After", "value": "2"}
    assert "at its limit" in overloaded["body_format_override"]["json_format"]["error"]
    assert http.index(overloaded) < next(i for i, m in enumerate(http) if "status_code_filter" in m["filter"])
    grpc_overloaded = local_reply(grpc, "UO")
    assert "at its limit" in grpc_overloaded["body_format_override"]["text_format_source"]["inline_string"]
    assert grpc_overloaded["headers_to_add"][0]["header"] == {"key": "retry-after", "value": "2"}


def test_the_gateway_holds_ten_thousand_client_connections() -> None:
    bootstrap = resources.bootstrap(
        resources.Ports("0.0.0.0", 1, 2, 4, 5), "/run/a.sock", FILES, GatewayConfig(), None
    )
    (monitor,) = bootstrap["overload_manager"]["resource_monitors"]
    assert monitor["typed_config"]["max_active_downstream_connections"] >= 10_000
    assert bootstrap["stats_flush_interval"] == "1s", "the p99 the attempt timeouts follow is recent"


def test_a_slow_host_is_written_unhealthy_the_others_as_they_are() -> None:
    a = node("a", "simple").model_copy(update={"triton_http_url": "http://10.0.0.1:8000"})
    b = node("b", "simple").model_copy(update={"triton_http_url": "http://10.0.0.2:8000"})
    (assignment,) = resources.endpoints(
        "model.simple", [a, b], NodeRoute.TRITON, frozenset({"10.0.0.2:8000"})
    )["resources"]
    fast, slow = assignment["endpoints"][0]["lb_endpoints"]
    assert "health_status" not in fast and slow["health_status"] == "UNHEALTHY"
