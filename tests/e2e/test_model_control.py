"""Cluster-wide model control on a real two-node cluster, driven with Triton's own clients as
NVIDIA's `simple_http_model_control.py` and `simple_grpc_model_control.py` drive a Triton: load,
load with a config override (and a malformed one), unload, an unknown model. Each applies to
every node whose repository has the model, for the cluster token only, and the routing view
(Envoy's clusters included) follows before the answer comes.

The nodes' repositories differ: `digits` is on node-1 alone, and `twin` has version 1 on node-1
but versions 1 and 2 on node-2, so that an override asking for version 2 fails on node-1 only.
Every test leaves the models as it found them (loaded, with their repository's config).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.e2e.cluster import DATA_PLANES, MODELS, fleet_config, simple_body
from tritonfleet.config import DataPlane
from tritonfleet.triton_admin import ADMIN_HEADER, GRPC_ADMIN_METADATA, admin_key
from tritonfleet.up.cluster import LocalCluster, NodeSpec

PROTOCOLS = ["http", "grpc"]
NODES = ("node-1", "node-2")
NODE_HEADER = "X-Tritonfleet-Node"
# What NVIDIA's model-control examples send as "the config with wrong format".
MALFORMED = '"parameters": {"config": {{"max_batch_size": "16"}}}'
# Asks for a version that node-1's copy of `twin` lacks.
VERSION_2 = json.dumps(
    {"backend": "python", "max_batch_size": 8, "version_policy": {"specific": {"versions": [2]}}}
)

Client = httpclient.InferenceServerClient | grpcclient.InferenceServerClient


def twin(root: Path, versions: int) -> None:
    """`simple` under the name `twin`, with versions 1 to `versions`, of which version 1 alone
    is served (until an override says otherwise)."""
    config = (MODELS / "simple" / "config.pbtxt").read_text().replace('name: "simple"', 'name: "twin"')
    (root / "twin").mkdir(parents=True)
    (root / "twin" / "config.pbtxt").write_text(
        config + "version_policy: { specific: { versions: [ 1 ] } }\n"
    )
    for version in range(1, versions + 1):
        (root / "twin" / str(version)).mkdir()
        shutil.copy(MODELS / "simple" / "1" / "model.py", root / "twin" / str(version) / "model.py")


def node_repository(root: Path, links: list[str], twin_versions: int) -> Path:
    twin(root, twin_versions)
    for name in links:
        (root / name).symlink_to(MODELS / name, target_is_directory=True)
    return root


@pytest.fixture(scope="module", params=DATA_PLANES)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """node-1 holds `digits` too, but does not load it at start (node.load_models)."""
    tmp = tmp_path_factory.mktemp("model-control")
    gateway: dict[str, Any] = {"data_plane": request.param, "request_timeout_s": 30.0}
    if request.param == DataPlane.ENVOY.value:
        gateway["envoy_admin_socket"] = str(tmp_path_factory.mktemp("admin") / "sock")
    node_1 = node_repository(tmp / "repos" / "node-1", ["simple", "digits"], twin_versions=1)
    node_2 = node_repository(tmp / "repos" / "node-2", ["simple"], twin_versions=2)
    specs = [
        NodeSpec("node-1", {"model_repository": str(node_1), "load_models": "simple,twin"}),
        NodeSpec("node-2", {"model_repository": str(node_2)}),
    ]
    local = LocalCluster(fleet_config(tmp, gateway=gateway), tmp / "state", specs)
    try:
        local.start()
        yield local
    finally:
        local.stop()


def token(fleet: LocalCluster) -> str:
    return fleet.cluster_auth["Authorization"].removeprefix("Bearer ")


def operator(fleet: LocalCluster) -> dict[str, str]:
    """The cluster token, as an HTTP header or gRPC metadata (whose keys are lower case)."""
    return {"authorization": f"Bearer {token(fleet)}"}


def node_addresses(fleet: LocalCluster) -> dict[str, dict[str, str]]:
    """Each node's Triton, `host:port` by protocol, as the health checker lists it."""
    nodes = httpx.get(f"{fleet.health_url}/v1/nodes", headers=operator(fleet)).json()["nodes"]
    return {
        node["node_id"]: {
            "http": node["triton_http_url"].removeprefix("http://"),
            "grpc": node["triton_grpc_url"].removeprefix("grpc://"),
        }
        for node in nodes
    }


def gateway_client(fleet: LocalCluster, protocol: str) -> Client:
    gw = fleet.config.gateway
    if protocol == "http":
        return httpclient.InferenceServerClient(f"{gw.host}:{gw.port}")
    return grpcclient.InferenceServerClient(f"{gw.host}:{gw.grpc_port}")


def node_client(fleet: LocalCluster, node_id: str, protocol: str) -> Client:
    address = node_addresses(fleet)[node_id][protocol]
    if protocol == "http":
        return httpclient.InferenceServerClient(address)
    return grpcclient.InferenceServerClient(address)


def node_admin(fleet: LocalCluster, protocol: str) -> dict[str, str]:
    """What opens a node's own repository API: the admin key, never the cluster token."""
    return {ADMIN_HEADER if protocol == "http" else GRPC_ADMIN_METADATA: admin_key(token(fleet))}


def simple_inputs(protocol: str) -> list[Any]:
    module: Any = httpclient if protocol == "http" else grpcclient
    inputs = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
    inputs[1].set_data_from_numpy(np.full((1, 16), 2, dtype=np.int32))
    return inputs


def refused(call: Callable[[], Any]) -> tuple[str | None, str]:
    """The status and message of the InferenceServerException that `call` raises."""
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value.status(), raised.value.message()


def serving(fleet: LocalCluster, model: str) -> set[str]:
    """The nodes that the gateway's own view has serving `model`."""
    nodes = httpx.get(f"{fleet.gateway_url}/v1/nodes", headers=operator(fleet)).json()["nodes"]
    return {node["node_id"] for node in nodes if any(m["name"] == model for m in node["models"])}


def node_config(fleet: LocalCluster, node_id: str, model: str) -> dict[str, Any]:
    address = node_addresses(fleet)[node_id]["http"]
    config: dict[str, Any] = httpx.get(f"http://{address}/v2/models/{model}/config").json()
    return config


def envoy_members(fleet: LocalCluster, cluster: str) -> int:
    """Hosts in one of Envoy's clusters; 0 when it has none (or no such cluster)."""
    admin = httpx.HTTPTransport(uds=str(fleet.config.gateway.envoy_admin_socket))
    with httpx.Client(transport=admin, base_url="http://envoy") as client:
        stats = client.get("/stats", params={"filter": f"^cluster.{cluster}.membership_total$"}).text
    return int(stats.split(":")[1]) if stats else 0


def wait_until(done: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)


def reload_from_repository(fleet: LocalCluster, model: str) -> None:
    """Unload, then load: a load alone keeps an override's config (Triton sees no change)."""
    gateway = gateway_client(fleet, "http")
    gateway.unload_model(model, headers=operator(fleet))
    gateway.load_model(model, headers=operator(fleet))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unload_and_load_apply_to_every_node_and_the_routing_view_follows(
    fleet: LocalCluster, protocol: str
) -> None:
    gateway = gateway_client(fleet, protocol)
    envoy = fleet.config.gateway.data_plane is DataPlane.ENVOY
    heartbeat_s = fleet.config.health.heartbeat_interval_s
    try:
        started = time.monotonic()
        gateway.unload_model("simple", headers=operator(fleet))
        unload_s = time.monotonic() - started
        # The answer came once the gateway's view had the model gone: within a heartbeat or so.
        assert serving(fleet, "simple") == set()
        assert unload_s < heartbeat_s + 2.0, f"unload answered after {unload_s:.2f} s"
        assert not gateway.is_model_ready("simple")
        assert not any(node_client(fleet, node_id, protocol).is_model_ready("simple") for node_id in NODES)
        index = gateway.get_model_repository_index(**({} if protocol == "http" else {"as_json": True}))
        entries = index if protocol == "http" else index["models"]
        assert {entry["name"] for entry in entries} == {"simple", "digits", "twin"}, "held, loaded or not"
        assert [entry.get("state") for entry in entries if entry["name"] == "simple"] != ["READY"]
        if envoy:
            # Envoy follows the same view, a moment later.
            wait_until(lambda: envoy_members(fleet, "model.simple") == 0, "envoy's cluster emptied")
            wait_until(lambda: envoy_members(fleet, "grpc.simple") == 0, "and its gRPC twin")
        via_node = refused(
            lambda: node_client(fleet, "node-1", protocol).infer("simple", simple_inputs(protocol))
        )
        via_gateway = refused(lambda: gateway.infer("simple", simple_inputs(protocol)))
        assert via_gateway[0] == via_node[0]
        assert via_gateway[1].startswith("Request for unknown model: 'simple'"), via_gateway
    finally:
        gateway.load_model("simple", headers=operator(fleet))
    assert serving(fleet, "simple") == set(NODES)
    assert gateway.is_model_ready("simple")
    assert all(node_client(fleet, node_id, protocol).is_model_ready("simple") for node_id in NODES)
    result = gateway.infer("simple", simple_inputs(protocol))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.arange(16).reshape(1, 16) + 2)
    if envoy:
        wait_until(lambda: envoy_members(fleet, "model.simple") == 2, "envoy's cluster refilled")
        wait_until(lambda: envoy_members(fleet, "grpc.simple") == 2, "and its gRPC twin")
    served = {
        httpx.post(f"{fleet.gateway_url}/v2/models/simple/infer", json=simple_body(1)).headers[NODE_HEADER]
        for _ in range(6)
    }
    assert served == set(NODES)


# (protocol, override, what each node's config then says): NVIDIA's example's own override over
# gRPC, a whole config with more instances over HTTP.
OVERRIDES = [
    ("grpc", '{"max_batch_size":"16"}', {"max_batch_size": 16}),
    (
        "http",
        json.dumps(
            {
                "backend": "python",
                "max_batch_size": 4,
                "input": [{"name": n, "data_type": "TYPE_INT32", "dims": [16]} for n in ("INPUT0", "INPUT1")],
                "output": [
                    {"name": n, "data_type": "TYPE_INT32", "dims": [16]} for n in ("OUTPUT0", "OUTPUT1")
                ],
                "instance_group": [{"kind": "KIND_CPU", "count": 2}],
            }
        ),
        {"max_batch_size": 4, "instances": 2},
    ),
]


@pytest.mark.parametrize(("protocol", "override", "expected"), OVERRIDES, ids=["grpc", "http"])
def test_a_load_with_a_config_override_changes_the_model_on_every_node(
    fleet: LocalCluster, protocol: str, override: str, expected: dict[str, int]
) -> None:
    gateway = gateway_client(fleet, protocol)
    try:
        gateway.load_model("simple", headers=operator(fleet), config=override)
        for node_id in NODES:
            config = node_config(fleet, node_id, "simple")
            assert config["max_batch_size"] == expected["max_batch_size"], node_id
            if "instances" in expected:
                assert config["instance_group"][0]["count"] == expected["instances"], node_id
        assert gateway.is_model_ready("simple")
    finally:
        reload_from_repository(fleet, "simple")
    assert {node_config(fleet, node_id, "simple")["max_batch_size"] for node_id in NODES} == {8}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_malformed_override_is_answered_as_a_node_answers_it(fleet: LocalCluster, protocol: str) -> None:
    """As the examples check: the error says "failed to load", and the model keeps serving."""
    direct = node_client(fleet, "node-1", protocol)
    via_node = refused(
        lambda: direct.load_model("simple", headers=node_admin(fleet, protocol), config=MALFORMED)
    )
    gateway = gateway_client(fleet, protocol)
    via_gateway = refused(lambda: gateway.load_model("simple", headers=operator(fleet), config=MALFORMED))
    assert via_gateway == via_node
    assert via_gateway == (
        "500" if protocol == "http" else "StatusCode.INTERNAL",
        "failed to load 'simple', failed to poll from model repository",
    )
    assert gateway.is_model_ready("simple") and serving(fleet, "simple") == set(NODES)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_model_no_repository_has_is_answered_as_a_node_answers_it(
    fleet: LocalCluster, protocol: str
) -> None:
    direct = node_client(fleet, "node-1", protocol)
    gateway = gateway_client(fleet, protocol)
    via_node = refused(lambda: direct.load_model("wrong_model_name", headers=node_admin(fleet, protocol)))
    via_gateway = refused(lambda: gateway.load_model("wrong_model_name", headers=operator(fleet)))
    assert via_gateway == via_node
    assert "failed to load 'wrong_model_name'" in via_gateway[1]
    # Triton unloads a model it does not have without a word; so does the cluster.
    direct.unload_model("wrong_model_name", headers=node_admin(fleet, protocol))
    gateway.unload_model("wrong_model_name", headers=operator(fleet))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("credential", [None, "Bearer not-the-cluster-token"], ids=["none", "wrong"])
def test_without_the_cluster_token_model_control_is_refused(
    fleet: LocalCluster, protocol: str, credential: str | None
) -> None:
    gateway = gateway_client(fleet, protocol)
    headers = {"authorization": credential} if credential else None
    started = time.monotonic()
    for call in (gateway.load_model, gateway.unload_model):
        status, message = refused(lambda: call("simple", headers=headers))  # noqa: B023
        assert status == ("401" if protocol == "http" else "StatusCode.UNAUTHENTICATED")
        assert "model control needs the cluster token" in message
    assert time.monotonic() - started < 2, "answered at once"
    assert serving(fleet, "simple") == set(NODES), "nothing changed"


def test_a_failure_on_one_node_names_that_node_and_its_reason(fleet: LocalCluster) -> None:
    """node-1's `twin` has no version 2: the override fails there, and works on node-2."""
    try:
        config = json.dumps({"parameters": {"config": VERSION_2}})
        answer = httpx.post(
            f"{fleet.gateway_url}/v2/repository/models/twin/load", content=config, headers=operator(fleet)
        )
        assert answer.status_code == 400, "as Triton answers a load that fails"
        assert answer.json() == {
            "error": "failed to load 'twin' on 1 of 2 nodes: node-1: load failed for model 'twin': "
            "at least one version must be available under the version policy of model 'twin'; "
            "loaded on node-2",
            "failed_nodes": "node-1",
        }
        assert node_config(fleet, "node-2", "twin")["version_policy"] == {"specific": {"versions": [2]}}
        assert node_config(fleet, "node-1", "twin")["version_policy"] == {"specific": {"versions": [1]}}
        message = service_pb2.RepositoryModelLoadRequest(model_name="twin")
        message.parameters["config"].string_param = VERSION_2
        gw = fleet.config.gateway
        with grpc.insecure_channel(f"{gw.host}:{gw.grpc_port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                stub.RepositoryModelLoad(message, metadata=tuple(operator(fleet).items()))
        error: Any = raised.value
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == answer.json()["error"]
        assert ("x-tritonfleet-failed-nodes", "node-1") in error.trailing_metadata()
    finally:
        reload_from_repository(fleet, "twin")
    assert {
        node_config(fleet, node_id, "twin")["version_policy"]["specific"]["versions"][0] for node_id in NODES
    } == {1}


def test_a_model_in_one_nodes_repository_is_loaded_there_alone(fleet: LocalCluster) -> None:
    """node-2's repository lacks `digits`: it is not asked, and no failure of it is reported."""
    gateway = gateway_client(fleet, "http")
    assert not gateway.is_model_ready("digits"), "not loaded at start (node.load_models)"
    try:
        gateway.load_model("digits", headers=operator(fleet))
        assert serving(fleet, "digits") == {"node-1"}
        assert gateway.is_model_ready("digits")
        image = {"name": "IMAGE", "shape": [1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}
        answer = httpx.post(f"{fleet.gateway_url}/v2/models/digits/infer", json={"inputs": [image]})
        assert answer.status_code == 200 and answer.headers[NODE_HEADER] == "node-1"
    finally:
        gateway.unload_model("digits", headers=operator(fleet))
    assert serving(fleet, "digits") == set()
    assert not gateway.is_model_ready("digits")
