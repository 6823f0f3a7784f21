"""A real two-node cluster answers Triton's gRPC clients as a single Triton would."""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.e2e.cluster import DATA_PLANES, cluster
from tritonfleet.up.cluster import LocalCluster

MAX_MESSAGE_BYTES = 1024 * 1024
NODE = "x-tritonfleet-node"


@pytest.fixture(scope="module", params=DATA_PLANES)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    models = ["simple", "countdown", "latency"]
    local = cluster(
        tmp_path_factory.mktemp("grpc"),
        {"node-1": models, "node-2": models},
        gateway={
            "grpc_max_message_bytes": MAX_MESSAGE_BYTES,
            "request_timeout_s": 10.0,
            "data_plane": request.param,
        },
    )
    try:
        local.start()
        yield local
    finally:
        local.stop()


def gateway_address(fleet: LocalCluster) -> str:
    return f"{fleet.config.gateway.host}:{fleet.config.gateway.grpc_port}"


def node_address(fleet: LocalCluster, node_id: str) -> str:
    nodes = httpx.get(f"{fleet.health_url}/v1/nodes", headers=fleet.cluster_auth).json()["nodes"]
    url = next(node["triton_grpc_url"] for node in nodes if node["node_id"] == node_id)
    return str(url).removeprefix("grpc://")


@pytest.fixture
def gateway(fleet: LocalCluster) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(gateway_address(fleet)) as client:
        yield client


@pytest.fixture
def direct(fleet: LocalCluster) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(node_address(fleet, "node-1")) as client:
        yield client


@pytest.fixture
def stub(fleet: LocalCluster) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    """The raw generated stub, to read the metadata the gateway adds."""
    with grpc.insecure_channel(gateway_address(fleet)) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def simple_inputs(value: int = 3) -> list[grpcclient.InferInput]:
    inputs = [grpcclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
    inputs[1].set_data_from_numpy(np.full((1, 16), value, dtype=np.int32))
    return inputs


def countdown_inputs(n: int, interval_ms: int = 0) -> list[grpcclient.InferInput]:
    inputs = [grpcclient.InferInput("N", [1], "INT32")]
    inputs[0].set_data_from_numpy(np.array([n], dtype=np.int32))
    if interval_ms:
        inputs.append(grpcclient.InferInput("INTERVAL_MS", [1], "INT32"))
        inputs[1].set_data_from_numpy(np.array([interval_ms], dtype=np.int32))
    return inputs


def countdown_request(n: int, interval_ms: int = 0, request_id: str = "") -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="countdown", id=request_id)
    for name, value in (("N", n), ("INTERVAL_MS", interval_ms)):
        request.inputs.add(name=name, datatype="INT32", shape=[1])
        request.raw_input_contents.append(np.array([value], dtype=np.int32).tobytes())
    return request


def inference_count(client: grpcclient.InferenceServerClient, model: str) -> int:
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"]
    return sum(int(entry.get("inference_count", 0)) for entry in stats)


class Stream:
    """tritonclient's streaming API, with the callback's results queued for the test."""

    def __init__(self, client: grpcclient.InferenceServerClient, **options: Any) -> None:
        self.client = client
        self.answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
        client.start_stream(callback=lambda result, error: self.answers.put((result, error)), **options)

    def take(self, count: int, timeout_s: float = 20.0) -> list[tuple[Any, Any]]:
        return [self.answers.get(timeout=timeout_s) for _ in range(count)]

    def close(self) -> None:
        self.client.stop_stream()


def counts(answers: list[tuple[Any, Any]]) -> list[int]:
    assert [error for _, error in answers] == [None] * len(answers)
    return [int(result.as_numpy("COUNT")[0]) for result, _ in answers]


def test_tritonclient_grpc_infer_gives_the_same_results_as_a_node(
    gateway: grpcclient.InferenceServerClient, direct: grpcclient.InferenceServerClient
) -> None:
    want = direct.infer("simple", simple_inputs())
    got = gateway.infer("simple", simple_inputs(), request_id="mine-1")
    for name in ("OUTPUT0", "OUTPUT1"):
        np.testing.assert_array_equal(got.as_numpy(name), want.as_numpy(name))
    np.testing.assert_array_equal(got.as_numpy("OUTPUT0")[0], np.arange(16) + 3)
    assert got.get_response().id == "mine-1", "the request travels untouched, its id included"


def test_metadata_config_and_readiness_match_a_node(
    gateway: grpcclient.InferenceServerClient, direct: grpcclient.InferenceServerClient
) -> None:
    assert gateway.is_server_live() and gateway.is_server_ready()
    assert gateway.is_model_ready("simple") and gateway.is_model_ready("simple", "1")
    assert not gateway.is_model_ready("nope")
    assert not gateway.is_model_ready("simple", "7")
    for model in ("simple", "countdown"):
        assert gateway.get_model_metadata(model, as_json=True) == direct.get_model_metadata(
            model, as_json=True
        )
        assert gateway.get_model_config(model, as_json=True) == direct.get_model_config(model, as_json=True)
    assert gateway.get_server_metadata(as_json=True) == direct.get_server_metadata(as_json=True)


def test_statistics_and_repository_index_are_cluster_wide(
    fleet: LocalCluster, gateway: grpcclient.InferenceServerClient
) -> None:
    gateway.infer("simple", simple_inputs())
    nodes = [grpcclient.InferenceServerClient(node_address(fleet, node_id)) for node_id in fleet.nodes]
    per_node = sum(inference_count(node, "simple") for node in nodes)
    assert inference_count(gateway, "simple") == per_node > 0
    index = gateway.get_model_repository_index(as_json=True)["models"]
    assert {(entry["name"], entry["version"], entry["state"]) for entry in index} == {
        ("simple", "1", "READY"),
        ("countdown", "1", "READY"),
        ("latency", "1", "READY"),
    }
    for node in nodes:
        node.close()


def test_round_robin_spreads_requests_evenly_by_tritons_own_statistics(
    fleet: LocalCluster, gateway: grpcclient.InferenceServerClient
) -> None:
    nodes = {
        node_id: grpcclient.InferenceServerClient(node_address(fleet, node_id)) for node_id in fleet.nodes
    }
    before = {node_id: inference_count(node, "simple") for node_id, node in nodes.items()}
    for _ in range(40):
        gateway.infer("simple", simple_inputs())
    served = {node_id: inference_count(node, "simple") - before[node_id] for node_id, node in nodes.items()}
    assert served == {"node-1": 20, "node-2": 20}
    for node in nodes.values():
        node.close()


def test_the_request_id_and_serving_node_come_back_as_trailing_metadata(
    fleet: LocalCluster, stub: service_pb2_grpc.GRPCInferenceServiceStub
) -> None:
    request = service_pb2.ModelReadyRequest(name="simple")
    answer, call = stub.ModelReady.with_call(request, metadata=(("x-request-id", "my-request-42"),))
    trailing = dict(call.trailing_metadata())
    assert answer.ready
    assert trailing["x-request-id"] == "my-request-42" and trailing[NODE] in fleet.nodes


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda client: client.infer("nope", simple_inputs()),
            "Request for unknown model: 'nope' is not found",
        ),
        (lambda client: client.get_model_metadata("nope"), "Request for unknown model: 'nope' is not found"),
        (
            lambda client: client.infer("simple", simple_inputs(), model_version="7"),
            "Request for unknown model: 'simple' version 7 is not found",
        ),
    ],
    ids=["infer", "metadata", "version"],
)
def test_an_unknown_model_is_not_found(
    gateway: grpcclient.InferenceServerClient, call: Any, message: str
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        call(gateway)
    assert raised.value.status() == "StatusCode.NOT_FOUND"
    assert message in raised.value.message()


def test_a_message_over_the_limit_is_resource_exhausted(gateway: grpcclient.InferenceServerClient) -> None:
    big = grpcclient.InferInput("INPUT0", [1, MAX_MESSAGE_BYTES], "UINT8")
    big.set_data_from_numpy(np.zeros((1, MAX_MESSAGE_BYTES), dtype=np.uint8))
    with pytest.raises(InferenceServerException) as raised:
        gateway.infer("simple", [big], client_timeout=10)
    assert raised.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert (
        "larger than max" in raised.value.message() and f"vs. {MAX_MESSAGE_BYTES})" in raised.value.message()
    )


def test_a_client_deadline_reaches_the_node(gateway: grpcclient.InferenceServerClient) -> None:
    slow = grpcclient.InferInput("INPUT0", [1, 1], "FP32")
    slow.set_data_from_numpy(np.ones((1, 1), dtype=np.float32))
    started = time.monotonic()
    with pytest.raises(InferenceServerException) as raised:
        gateway.infer("latency", [slow], parameters={"service_time_ms": 3000}, client_timeout=0.5)
    assert raised.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert time.monotonic() - started < 2


def test_a_decoupled_model_streams_every_response_through_the_gateway(
    gateway: grpcclient.InferenceServerClient, direct: grpcclient.InferenceServerClient
) -> None:
    for client in (direct, gateway):
        stream = Stream(client)
        try:
            client.async_stream_infer("countdown", countdown_inputs(4), request_id="a")
            answers = stream.take(4)
            assert counts(answers) == [3, 2, 1, 0]
            assert {result.get_response().id for result, _ in answers} == {"a"}
            client.async_stream_infer("countdown", countdown_inputs(2), enable_empty_final_response=True)
            final = stream.take(3)[-1][0].get_response()
            assert final.parameters["triton_final_response"].bool_param and not final.outputs
            assert stream.answers.empty()
        finally:
            stream.close()


def test_a_model_that_answers_once_streams_as_well(gateway: grpcclient.InferenceServerClient) -> None:
    # Not in one stream with a decoupled model: Triton 2.51 can abort when a decoupled and a
    # non-decoupled model write to one stream at once (seen after a cancelled request).
    stream = Stream(gateway)
    try:
        for value in range(3):
            gateway.async_stream_infer("simple", simple_inputs(value), request_id=str(value))
        answers = {result.get_response().id: result for result, _ in stream.take(3)}
        for value in range(3):
            np.testing.assert_array_equal(answers[str(value)].as_numpy("OUTPUT0")[0], np.arange(16) + value)
    finally:
        stream.close()


def test_a_request_for_an_unknown_model_is_answered_in_the_stream_which_goes_on(
    gateway: grpcclient.InferenceServerClient, direct: grpcclient.InferenceServerClient
) -> None:
    for client in (direct, gateway):
        stream = Stream(client)
        try:
            client.async_stream_infer("nope", countdown_inputs(1), request_id="x")
            client.async_stream_infer("countdown", countdown_inputs(2))
            (result, error), *rest = stream.take(3)
            assert result is None and "Request for unknown model: 'nope' is not found" in error.message()
            assert counts(rest) == [1, 0]
        finally:
            stream.close()


def test_grpc_calls_are_counted_in_the_gateway_metrics(
    fleet: LocalCluster, gateway: grpcclient.InferenceServerClient
) -> None:
    gateway.infer("simple", simple_inputs())
    counted = (
        'tritonfleet_gateway_requests_total{code="OK",route="grpc:ModelInfer"}',
        'tritonfleet_gateway_upstream_requests_total{node="node-1",outcome="OK"}',
    )
    # Envoy's fast path is counted from its statistics, read every second.
    deadline = time.monotonic() + 10
    while not all(line in (metrics := httpx.get(f"{fleet.gateway_url}/metrics").text) for line in counted):
        assert time.monotonic() < deadline, metrics
        time.sleep(0.2)


def test_a_stream_stays_on_one_node_for_its_life(
    fleet: LocalCluster, stub: service_pb2_grpc.GRPCInferenceServiceStub
) -> None:
    def counts() -> dict[str, int]:
        """Each node's own count of countdown requests, from Triton's statistics."""
        found = {}
        for node_id in fleet.nodes:
            with grpcclient.InferenceServerClient(node_address(fleet, node_id)) as node:
                found[node_id] = inference_count(node, "countdown")
        return found

    before = counts()
    call = stub.ModelStreamInfer(iter([countdown_request(2, request_id=str(i)) for i in range(6)]))
    responses = list(call)
    pinned = dict(call.initial_metadata())[NODE]
    assert pinned in fleet.nodes and len(responses) == 12
    assert all(not response.error_message for response in responses)
    after = counts()
    assert {node_id: after[node_id] - before[node_id] for node_id in fleet.nodes} == {
        node_id: 6 if node_id == pinned else 0 for node_id in fleet.nodes
    }, "all six requests of the stream went to the node it is pinned to"


def load_forever(address: str, stopping: threading.Event, failures: list[str]) -> None:
    with grpcclient.InferenceServerClient(address) as client:
        while not stopping.is_set():
            try:
                client.infer("simple", simple_inputs(), client_timeout=10)
            except InferenceServerException as exc:
                failures.append(f"{exc.status()}: {exc.message()}")


def test_a_killed_node_ends_its_stream_with_unavailable_and_unary_calls_go_elsewhere(
    fleet: LocalCluster,
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    gateway: grpcclient.InferenceServerClient,
) -> None:
    call = stub.ModelStreamInfer(iter([countdown_request(200, interval_ms=50)]))
    victim = dict(call.initial_metadata())[NODE]
    stopping, failures = threading.Event(), []
    loaders = [
        threading.Thread(target=partial(load_forever, gateway_address(fleet), stopping, failures))
        for _ in range(3)
    ]
    for loader in loaders:
        loader.start()
    try:
        received = [next(call) for _ in range(3)]
        fleet.nodes[victim].signal(signal.SIGKILL)  # the manager; its Triton dies with it
        with pytest.raises(grpc.RpcError) as ended:
            for response in call:
                received.append(response)
        time.sleep(1.0)
    finally:
        stopping.set()
        for loader in loaders:
            loader.join()
    assert ended.value.code() is grpc.StatusCode.UNAVAILABLE
    assert f"node {victim} failed during the stream" in str(ended.value.details())
    assert len(received) < 200, "the stream ended with its node, instead of running on"
    assert failures == [], "every unary call was served, by another node if need be"

    stream = Stream(gateway)
    try:
        gateway.async_stream_infer("countdown", countdown_inputs(3))
        assert counts(stream.take(3)) == [2, 1, 0], "a new stream lands on the healthy node"
    finally:
        stream.close()
    fleet.nodes[victim].proc.wait()  # type: ignore[union-attr]
    fleet.nodes[victim].start()
    fleet.wait_node(victim, 120)
