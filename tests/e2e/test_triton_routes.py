"""Triton's routes that no node can answer for the cluster (shared memory, trace and log
settings) and routes Triton does not know: through either data plane, Triton's clients get the
answers of a Triton with client shared memory off, in Triton's JSON shape and statuses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.e2e.cluster import DATA_PLANES, cluster
from tritonfleet.gateway import unrouted
from tritonfleet.up.cluster import LocalCluster

Call = Callable[[Any], object]


@pytest.fixture(scope="module", params=DATA_PLANES)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    tmp = tmp_path_factory.mktemp("routes")
    local = cluster(tmp, {"node-1": ["simple"]}, gateway={"data_plane": request.param})
    try:
        local.start()
        yield local
    finally:
        local.stop()


# The same calls on both clients: tritonclient's HTTP and gRPC APIs share these signatures.
REFUSED: list[tuple[str, Call, str]] = [
    ("shm-register", lambda c: c.register_system_shared_memory("r0", "/r0", 64), unrouted.SHARED_MEMORY),
    ("shm-unregister", lambda c: c.unregister_system_shared_memory(), unrouted.SHARED_MEMORY),
    (
        "cuda-register",
        lambda c: c.register_cuda_shared_memory("r0", b"\0" * 64, 0, 64),
        unrouted.SHARED_MEMORY,
    ),
    ("cuda-unregister", lambda c: c.unregister_cuda_shared_memory("r0"), unrouted.SHARED_MEMORY),
    ("trace-get", lambda c: c.get_trace_settings(), unrouted.TRACE),
    ("trace-update", lambda c: c.update_trace_settings("simple", {"trace_rate": "2"}), unrouted.TRACE),
    ("log-get", lambda c: c.get_log_settings(), unrouted.LOG),
    ("log-update", lambda c: c.update_log_settings({"log_verbose_level": 1}), unrouted.LOG),
]


@pytest.mark.parametrize(("call", "reason"), [row[1:] for row in REFUSED], ids=[row[0] for row in REFUSED])
def test_what_the_gateway_cannot_do_for_the_cluster_is_refused_saying_why(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient, call: Call, reason: str
) -> None:
    for client, status in ((http, "501"), (grpc, "StatusCode.UNIMPLEMENTED")):
        with pytest.raises(InferenceServerException) as raised:
            call(client)
        assert (raised.value.status(), raised.value.message()) == (status, reason)


def test_the_shared_memory_status_lists_no_region_as_a_triton_with_none_registered(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    assert http.get_system_shared_memory_status() == []
    assert http.get_cuda_shared_memory_status() == []
    assert len(grpc.get_system_shared_memory_status().regions) == 0
    assert len(grpc.get_cuda_shared_memory_status().regions) == 0
    for client, status in ((http, "404"), (grpc, "StatusCode.NOT_FOUND")):
        with pytest.raises(InferenceServerException) as raised:
            client.get_system_shared_memory_status("r0")
        assert (raised.value.status(), raised.value.message()) == (
            status,
            "Unable to find system shared memory region: 'r0'",
        )


def node_url(fleet: LocalCluster) -> str:
    (node,) = httpx.get(f"{fleet.health_url}/v1/nodes", headers=fleet.cluster_auth).json()["nodes"]
    return str(node["triton_http_url"])


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/nope", 404, "Not Found"),
        ("POST", "/v2/models/simple/nope", 404, "Not Found"),
        ("GET", "/v2/models/simple/versions/1/trace/setting", 404, "Not Found"),
        ("GET", "/v2/models/simple/infer", 405, "Method Not Allowed"),
        ("POST", "/v2/health/ready", 405, "Method Not Allowed"),
    ],
)
def test_an_unknown_route_or_method_gets_tritons_own_answer(
    fleet: LocalCluster, method: str, path: str, status: int, error: str
) -> None:
    direct = httpx.request(method, node_url(fleet) + path)
    answer = httpx.request(method, fleet.gateway_url + path)
    assert (direct.status_code, direct.json()) == (status, {"error": error}), "the node's own Triton"
    # The body is Triton's to the byte; Triton itself sends these as text/plain, the Python
    # gateway as JSON (and Envoy sends a fast route's wrong method to a node's Triton).
    assert (answer.status_code, answer.content) == (status, direct.content)
