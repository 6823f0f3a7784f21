"""Stateful models on a real two-node cluster: every request of a sequence reaches one node.

`simple_string_dyna_sequence` keeps a running sum per sequence on the instance that got its
start; a request of a sequence sent to another node has no start there and Triton refuses it,
so right sums for many interleaved sequences over both nodes are the proof, and each node's own
statistics count exactly the requests the gateway says it sent there.
"""

from __future__ import annotations

import itertools
import signal
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.e2e.cluster import DATA_PLANES, cluster
from tests.e2e.test_faults import wait_refused
from tests.e2e.test_grpc import NODE, Stream, gateway_address
from tritonfleet.net import host_port
from tritonfleet.up.cluster import LocalCluster

MODEL = "simple_string_dyna_sequence"
NODES = ("node-1", "node-2")
LENGTH = 4


@pytest.fixture(scope="module", params=DATA_PLANES)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = cluster(
        tmp_path_factory.mktemp("sequences"),
        {node_id: [MODEL, "simple"] for node_id in NODES},
        gateway={"data_plane": request.param},
    )
    try:
        local.start()
        yield local
    finally:
        local.stop()


def nodes(fleet: LocalCluster) -> dict[str, dict[str, Any]]:
    answer = httpx.get(f"{fleet.gateway_url}/v1/nodes", headers=fleet.cluster_auth).json()
    return {node["node_id"]: node for node in answer["nodes"]}


def successes(fleet: LocalCluster) -> Counter[str]:
    """Each node's own count of the model's successful requests, asked of its Triton directly."""
    counted: Counter[str] = Counter()
    for node_id, node in nodes(fleet).items():
        stats = httpx.get(f"{node['triton_http_url']}/v2/models/{MODEL}/stats").json()
        counted[node_id] = sum(
            int(entry["inference_stats"]["success"]["count"]) for entry in stats["model_stats"]
        )
    return counted


def values_of(index: int) -> list[int]:
    return [index + 1, 10, 20, 30][:LENGTH]


def expected(values: list[int], sequence_id: int | str) -> list[int]:
    """The model's answers: the running sum, plus the id on the last."""
    running = list(itertools.accumulate(values))
    return [*running[:-1], running[-1] + int(sequence_id)]


def ids(base: int, count: int) -> list[int | str]:
    """Half numeric, half string ids (decimal strings, which the model adds at the end)."""
    return [base + i if i % 2 == 0 else str(base + i) for i in range(count)]


def http_body(value: int, sequence_id: int | str, count: int) -> dict[str, Any]:
    return {
        "inputs": [{"name": "INPUT", "shape": [1, 1], "datatype": "INT32", "data": [value]}],
        "parameters": {
            "sequence_id": sequence_id,
            "sequence_start": count == 0,
            "sequence_end": count == LENGTH - 1,
        },
    }


def test_the_nodes_announce_the_model_stateful_and_the_others_stateless(fleet: LocalCluster) -> None:
    for node in nodes(fleet).values():
        flags = {model["name"]: (model["sequence"], model["sequence_idle_s"]) for model in node["models"]}
        assert flags == {MODEL: (True, 10.0), "simple": (False, 0.0)}


def test_interleaved_http_sequences_each_stay_on_one_node(fleet: LocalCluster) -> None:
    """23 sequences (an odd number: round robin would split them), their requests interleaved:
    right sums, one node each, both nodes used, and each node's Triton counted exactly the
    requests the gateway says it sent there."""
    sequence_ids = ids(1000, 23)
    before = successes(fleet)
    answers: dict[int | str, list[int]] = defaultdict(list)
    served: dict[int | str, set[str]] = defaultdict(set)
    with httpx.Client(base_url=fleet.gateway_url, timeout=10) as client:
        for count in range(LENGTH):
            for index, sequence_id in enumerate(sequence_ids):
                body = http_body(values_of(index)[count], sequence_id, count)
                answer = client.post(f"/v2/models/{MODEL}/infer", json=body)
                assert answer.status_code == 200, answer.text
                answers[sequence_id].append(answer.json()["outputs"][0]["data"][0])
                served[sequence_id].add(answer.headers["X-Tritonfleet-Node"])
    assert [answers[i] for i in sequence_ids] == [
        expected(values_of(n), i) for n, i in enumerate(sequence_ids)
    ]
    assert all(len(on) == 1 for on in served.values()), served
    per_node = Counter(next(iter(on)) for on in served.values())
    assert set(per_node) == set(NODES), "rendezvous spreads sequences over both nodes"
    after = successes(fleet)
    assert {node_id: after[node_id] - before[node_id] for node_id in NODES} == {
        node_id: per_node[node_id] * LENGTH for node_id in NODES
    }


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_http_sequences_give_the_right_sums(fleet: LocalCluster, binary: bool) -> None:
    """As NVIDIA's simple_http_sequence_sync_infer_client: binary tensors (the sequence id in the
    body's JSON header) and JSON alike, numeric and string ids, interleaved."""
    sequence_ids = ids(2000 + 100 * binary, 9)
    answers: dict[int | str, list[int]] = defaultdict(list)
    with httpclient.InferenceServerClient(host_port(fleet.gateway_url)) as client:
        for count in range(LENGTH):
            for index, sequence_id in enumerate(sequence_ids):
                inputs = [httpclient.InferInput("INPUT", [1, 1], "INT32")]
                value = np.full((1, 1), values_of(index)[count], dtype=np.int32)
                inputs[0].set_data_from_numpy(value, binary_data=binary)
                result = client.infer(
                    MODEL,
                    inputs,
                    outputs=[httpclient.InferRequestedOutput("OUTPUT", binary_data=binary)],
                    sequence_id=sequence_id,
                    sequence_start=count == 0,
                    sequence_end=count == LENGTH - 1,
                )
                answers[sequence_id].append(int(result.as_numpy("OUTPUT")[0][0]))
    assert [answers[i] for i in sequence_ids] == [
        expected(values_of(n), i) for n, i in enumerate(sequence_ids)
    ]


def grpc_request(value: int, sequence_id: int | str, count: int) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=MODEL, id=f"{sequence_id}_{count}")
    request.inputs.add(name="INPUT", datatype="INT32", shape=[1, 1])
    request.raw_input_contents.append(np.array([value], dtype=np.int32).tobytes())
    if isinstance(sequence_id, str):
        request.parameters["sequence_id"].string_param = sequence_id
    else:
        request.parameters["sequence_id"].int64_param = sequence_id
    request.parameters["sequence_start"].bool_param = count == 0
    request.parameters["sequence_end"].bool_param = count == LENGTH - 1
    return request


def test_interleaved_grpc_sequences_each_stay_on_one_node(fleet: LocalCluster) -> None:
    sequence_ids = ids(3000, 15)
    before = successes(fleet)
    answers: dict[int | str, list[int]] = defaultdict(list)
    served: dict[int | str, set[str]] = defaultdict(set)
    with grpc.insecure_channel(gateway_address(fleet)) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for count in range(LENGTH):
            for index, sequence_id in enumerate(sequence_ids):
                request = grpc_request(values_of(index)[count], sequence_id, count)
                response, call = stub.ModelInfer.with_call(request, timeout=10)
                answers[sequence_id].append(int(np.frombuffer(response.raw_output_contents[0], np.int32)[0]))
                served[sequence_id].add(dict(call.trailing_metadata())[NODE])
    assert [answers[i] for i in sequence_ids] == [
        expected(values_of(n), i) for n, i in enumerate(sequence_ids)
    ]
    assert all(len(on) == 1 for on in served.values()), served
    per_node = Counter(next(iter(on)) for on in served.values())
    assert set(per_node) == set(NODES)
    after = successes(fleet)
    assert {node_id: after[node_id] - before[node_id] for node_id in NODES} == {
        node_id: per_node[node_id] * LENGTH for node_id in NODES
    }


def test_tritonclient_grpc_sequences_give_the_right_sums(fleet: LocalCluster) -> None:
    """As simple_grpc_sequence_sync_infer_client --dyna, interleaved."""
    sequence_ids = ids(4000, 9)
    answers: dict[int | str, list[int]] = defaultdict(list)
    with grpcclient.InferenceServerClient(gateway_address(fleet)) as client:
        for count in range(LENGTH):
            for index, sequence_id in enumerate(sequence_ids):
                inputs = [grpcclient.InferInput("INPUT", [1, 1], "INT32")]
                inputs[0].set_data_from_numpy(np.full((1, 1), values_of(index)[count], dtype=np.int32))
                result = client.infer(
                    MODEL,
                    inputs,
                    sequence_id=sequence_id,
                    sequence_start=count == 0,
                    sequence_end=count == LENGTH - 1,
                )
                answers[sequence_id].append(int(result.as_numpy("OUTPUT")[0][0]))
    assert [answers[i] for i in sequence_ids] == [
        expected(values_of(n), i) for n, i in enumerate(sequence_ids)
    ]


def test_sequences_interleaved_on_one_grpc_stream_stay_whole(fleet: LocalCluster) -> None:
    """As simple_grpc_sequence_stream_infer_client: two sequences (a numeric and a string id)
    interleaved on one stream, which lives on one node, both sequences with it."""
    sequence_ids: list[int | str] = [5000, "5001"]
    with grpcclient.InferenceServerClient(gateway_address(fleet)) as client:
        stream = Stream(client)
        try:
            for count in range(LENGTH):
                for index, sequence_id in enumerate(sequence_ids):
                    inputs = [grpcclient.InferInput("INPUT", [1, 1], "INT32")]
                    inputs[0].set_data_from_numpy(np.full((1, 1), values_of(index)[count], dtype=np.int32))
                    client.async_stream_infer(
                        MODEL,
                        inputs,
                        request_id=f"{sequence_id}_{count}",
                        sequence_id=sequence_id,
                        sequence_start=count == 0,
                        sequence_end=count == LENGTH - 1,
                    )
            answers = stream.take(LENGTH * len(sequence_ids))
        finally:
            stream.close()
    assert [error for _, error in answers] == [None] * len(answers)
    by_request = {result.get_response().id: int(result.as_numpy("OUTPUT")[0][0]) for result, _ in answers}
    got = [[by_request[f"{i}_{count}"] for count in range(LENGTH)] for i in sequence_ids]
    assert got == [expected(values_of(n), i) for n, i in enumerate(sequence_ids)]


# Last in the module: it leaves one node dead.
def test_a_node_killed_mid_sequence_gives_a_clear_error_and_the_next_sequence_succeeds(
    fleet: LocalCluster,
) -> None:
    with httpx.Client(base_url=fleet.gateway_url, timeout=10) as client:
        started = {}
        for sequence_id in range(6000, 6040):
            answer = client.post(f"/v2/models/{MODEL}/infer", json=http_body(1, sequence_id, 0))
            assert answer.status_code == 200, answer.text
            started[sequence_id] = answer.headers["X-Tritonfleet-Node"]
        victim_id = "node-2"
        lost = [sequence_id for sequence_id, node_id in started.items() if node_id == victim_id]
        kept = [sequence_id for sequence_id, node_id in started.items() if node_id != victim_id]
        assert lost and kept
        grpc_id = 7000
        with grpc.insecure_channel(gateway_address(fleet)) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            while True:  # a gRPC sequence on the victim too
                _, call = stub.ModelInfer.with_call(grpc_request(1, grpc_id, 0), timeout=10)
                if dict(call.trailing_metadata())[NODE] == victim_id:
                    break
                stub.ModelInfer(grpc_request(1, grpc_id, LENGTH - 1), timeout=10)
                grpc_id += 1
            victim_triton = nodes(fleet)[victim_id]["triton_http_url"]
            victim = fleet.nodes[victim_id]
            victim.signal(signal.SIGKILL)  # the manager; its guard SIGKILLs its Triton
            victim.proc.wait()  # type: ignore[union-attr]
            wait_refused(victim_triton, 5.0)

            for sequence_id in lost[:2]:
                answer = client.post(f"/v2/models/{MODEL}/infer", json=http_body(2, sequence_id, 1))
                assert answer.status_code == 409, answer.text
                assert f"was on node {victim_id}" in answer.json()["error"]
                assert "start the sequence again" in answer.json()["error"]
            with pytest.raises(grpc.RpcError) as aborted:
                stub.ModelInfer(grpc_request(2, grpc_id, 1), timeout=10)
            assert aborted.value.code() is grpc.StatusCode.ABORTED
            assert "start the sequence again" in (aborted.value.details() or "")

        with httpclient.InferenceServerClient(host_port(fleet.gateway_url)) as triton_client:
            inputs = [httpclient.InferInput("INPUT", [1, 1], "INT32")]
            inputs[0].set_data_from_numpy(np.full((1, 1), 2, dtype=np.int32))
            with pytest.raises(InferenceServerException, match="start the sequence again"):
                triton_client.infer(MODEL, inputs, sequence_id=lost[-1])

        for sequence_id in kept[:3]:  # the survivor's sequences go on
            for count in range(1, LENGTH):
                answer = client.post(f"/v2/models/{MODEL}/infer", json=http_body(1, sequence_id, count))
                assert (answer.status_code, answer.headers["X-Tritonfleet-Node"]) == (
                    200,
                    started[sequence_id],
                )
        restarted = lost[0]  # started again, on the other node
        for count in range(LENGTH):
            answer = client.post(f"/v2/models/{MODEL}/infer", json=http_body(1, restarted, count))
            assert answer.status_code == 200, answer.text
            assert answer.headers["X-Tritonfleet-Node"] != victim_id
        assert answer.json()["outputs"][0]["data"][0] == expected([1] * LENGTH, restarted)[-1]
