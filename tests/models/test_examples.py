"""Triton's classic example models, as NVIDIA's client examples call them, answer what the examples
expect: one real tritonserver for the module, serving just those models."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import pytest_asyncio
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
from tritonclient import utils
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.e2e.test_grpc import Stream
from tests.node.fakes import repository
from tests.node.test_triton import launched
from tritonfleet.net import host_port
from tritonfleet.node.endpoints import TritonUrls

MODELS = [
    "simple_string",
    "simple_identity",
    "simple_sequence",
    "simple_dyna_sequence",
    "simple_string_dyna_sequence",
    "repeat_int32",
]
# The sequence examples' three sequences: two numeric ids on the int model, one string id on the
# string one (simple_sequence again without --dyna, simple_string_dyna_sequence with it).
VALUES = [11, 7, 5, 3, 2, 0, 1]
FIRST = [0, *VALUES]
SECOND = [100, *(-value for value in VALUES)]
THIRD = [20, *(-value for value in VALUES)]
SequenceId = int | str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def triton(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TritonUrls]:
    models = repository(tmp_path_factory.mktemp("examples") / "models", MODELS)
    async with launched(models) as process:
        await process.start()
        yield process.urls


@pytest.fixture
def http(triton: TritonUrls) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(host_port(triton.http))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def grpc_address(triton: TritonUrls) -> str:
    return triton.grpc.removeprefix("grpc://")


@pytest.fixture
def rpc(grpc_address: str) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(grpc_address) as client:
        yield client


def tensor(module: Any, name: str, array: np.ndarray, binary_data: bool = True) -> Any:
    """An InferInput of tritonclient's http or grpc `module` holding `array`."""
    datatype = "BYTES" if array.dtype.kind in "OS" else utils.np_to_triton_dtype(array.dtype)
    made = module.InferInput(name, list(array.shape), datatype)
    if module is httpclient:
        made.set_data_from_numpy(array, binary_data=binary_data)
    else:
        made.set_data_from_numpy(array)
    return made


def decimals(values: range | list[int]) -> np.ndarray:
    return np.array([str(value).encode() for value in values], dtype=np.object_).reshape(1, -1)


# simple_string


def test_simple_string_adds_and_subtracts_decimal_strings_over_http(
    http: httpclient.InferenceServerClient,
) -> None:
    """As simple_http_string_infer_client: 0..15 and sixteen 1s, one input binary and one JSON."""
    inputs = [
        tensor(httpclient, "INPUT0", decimals(range(16)), binary_data=True),
        tensor(httpclient, "INPUT1", decimals([1] * 16), binary_data=False),
    ]
    outputs = [
        httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=False),
    ]
    result = http.infer("simple_string", inputs, outputs=outputs)
    assert result.as_numpy("OUTPUT0").tolist() == [[str(i + 1).encode() for i in range(16)]]
    assert [int(text) for text in result.as_numpy("OUTPUT1")[0]] == [i - 1 for i in range(16)]


def test_simple_string_answers_a_batch_over_grpc(rpc: grpcclient.InferenceServerClient) -> None:
    """Two rows at once (max_batch_size 8), negative numbers and INT32's wrap-around included."""
    in0 = np.array([[str(i).encode() for i in range(16)], [b"-5", b"2147483647", *[b"0"] * 14]], dtype=object)
    in1 = np.array([[b"1"] * 16, [b"-7", b"1", *[b"3"] * 14]], dtype=object)
    result = rpc.infer(
        "simple_string", [tensor(grpcclient, "INPUT0", in0), tensor(grpcclient, "INPUT1", in1)]
    )
    assert result.as_numpy("OUTPUT0").shape == (2, 16)
    assert [int(text) for text in result.as_numpy("OUTPUT0")[0]] == [i + 1 for i in range(16)]
    assert [int(text) for text in result.as_numpy("OUTPUT0")[1][:3]] == [-12, -(2**31), 3]
    assert [int(text) for text in result.as_numpy("OUTPUT1")[1][:3]] == [2, 2147483646, -3]


def test_simple_string_takes_explicit_bytes_contents(grpc_address: str) -> None:
    """As grpc_explicit_byte_content_client: the generated stub, strings in `bytes_contents`."""
    request = service_pb2.ModelInferRequest(model_name="simple_string")
    for name, values in (("INPUT0", range(16)), ("INPUT1", [1] * 16)):
        given = request.inputs.add(name=name, datatype="BYTES", shape=[1, 16])
        given.contents.bytes_contents.extend(str(value).encode() for value in values)
    request.outputs.add(name="OUTPUT0")
    request.outputs.add(name="OUTPUT1")
    with grpc.insecure_channel(grpc_address) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert [output.name for output in response.outputs] == ["OUTPUT0", "OUTPUT1"]
    assert [list(output.shape) for output in response.outputs] == [[1, 16], [1, 16]]
    total, difference = (utils.deserialize_bytes_tensor(raw) for raw in response.raw_output_contents)
    assert [int(text) for text in total] == [i + 1 for i in range(16)]
    assert [int(text) for text in difference] == [i - 1 for i in range(16)]


def test_simple_string_refuses_a_string_that_is_no_integer(rpc: grpcclient.InferenceServerClient) -> None:
    in0 = np.array([[b"seven", *[b"0"] * 15]], dtype=object)
    inputs = [tensor(grpcclient, "INPUT0", in0), tensor(grpcclient, "INPUT1", decimals([1] * 16))]
    with pytest.raises(InferenceServerException, match="INPUT0 holds b'seven', not a decimal 32-bit integer"):
        rpc.infer("simple_string", inputs)


# simple_identity


@pytest.mark.parametrize("binary_data", [True, False], ids=["binary", "json"])
def test_simple_identity_returns_strings_with_nul_bytes_over_http(
    http: httpclient.InferenceServerClient, binary_data: bool
) -> None:
    """As simple_http_string_infer_client's identity calls: "he\\0llo" and b"\\0\\1\\2\\3" sixteen
    times, binary and JSON."""
    for element in (b"he\x00llo", b"\x00\x01\x02\x03"):
        strings = np.array([[element] * 16], dtype=np.object_)
        result = http.infer(
            "simple_identity",
            [tensor(httpclient, "INPUT0", strings, binary_data=binary_data)],
            outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary_data)],
        )
        answered = result.as_numpy("OUTPUT0")
        as_bytes = [value if isinstance(value, bytes) else value.encode() for value in answered.flat]
        assert answered.shape == (1, 16)
        assert as_bytes == [element] * 16


def test_simple_identity_returns_bytes_that_are_not_utf8(
    http: httpclient.InferenceServerClient, rpc: grpcclient.InferenceServerClient
) -> None:
    strings = np.array([[b"\xff\xfe\x00", b"\x80", b"", b"\xc3\x28"]], dtype=np.object_)
    by_http = http.infer("simple_identity", [tensor(httpclient, "INPUT0", strings)])
    by_grpc = rpc.infer("simple_identity", [tensor(grpcclient, "INPUT0", strings)])
    assert by_http.as_numpy("OUTPUT0").tolist() == strings.tolist()
    assert by_grpc.as_numpy("OUTPUT0").tolist() == strings.tolist()


# simple_sequence, simple_dyna_sequence, simple_string_dyna_sequence


def sequence_models(dyna: bool) -> tuple[str, str]:
    """The examples' (int model, string model)."""
    if dyna:
        return "simple_dyna_sequence", "simple_string_dyna_sequence"
    return "simple_sequence", "simple_sequence"


def expected(dyna: bool, ids: tuple[SequenceId, ...]) -> list[list[int]]:
    """What the examples check for FIRST, SECOND and THIRD. simple_sequence answers each input,
    plus 1 on the first; simple_dyna_sequence also adds the id on the last; the string dyna model
    answers the running sum, plus the id on the last."""
    if not dyna:
        return [[1, *VALUES], [101, *SECOND[1:]], [21, *THIRD[1:]]]
    first, second, third = (int(sequence_id) for sequence_id in ids)
    running = list(itertools.accumulate(THIRD))
    return [
        [1, *VALUES[:-1], VALUES[-1] + first],
        [101, *SECOND[1:-1], SECOND[-1] + second],
        [*running[:-1], running[-1] + third],
    ]


def sequence_ids(dyna: bool, offset: int) -> tuple[SequenceId, ...]:
    """As the examples' --offset: numeric 1000 + 2 * offset and the next; a string id the dyna
    backend can read as an integer with --dyna, else a UUID."""
    return 1000 + 2 * offset, 1001 + 2 * offset, str(1002 + offset) if dyna else str(uuid.uuid4())


def sequence_step(
    module: Any, values: list[int], count: int, sequence_id: SequenceId, model: str
) -> dict[str, Any]:
    """The keyword arguments of the examples' `count`-th request (from 1) of a sequence."""
    inputs = [tensor(module, "INPUT", np.full([1, 1], values[count - 1], dtype=np.int32))]
    return {
        "model_name": model,
        "inputs": inputs,
        "outputs": [module.InferRequestedOutput("OUTPUT")],
        "request_id": f"{sequence_id}_{count}",
        "sequence_id": sequence_id,
        "sequence_start": count == 1,
        "sequence_end": count == len(values),
    }


@pytest.mark.parametrize("dyna", [False, True], ids=["simple", "dyna"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sync_sequences_answer_as_the_examples_expect(
    http: httpclient.InferenceServerClient, rpc: grpcclient.InferenceServerClient, protocol: str, dyna: bool
) -> None:
    """As simple_{http,grpc}_sequence_sync_infer_client [--dyna]: three sequences, one after the
    other, each request waiting for its answer."""
    client, module = (http, httpclient) if protocol == "http" else (rpc, grpcclient)
    ids = sequence_ids(dyna, offset=10 * (protocol == "grpc") + dyna)
    int_model, string_model = sequence_models(dyna)
    answers = []
    for values, sequence_id, model in zip(
        (FIRST, SECOND, THIRD), ids, (int_model, int_model, string_model), strict=True
    ):
        steps = [
            sequence_step(module, values, count, sequence_id, model) for count in range(1, len(values) + 1)
        ]
        results = [client.infer(**step) for step in steps]
        assert {result.as_numpy("OUTPUT").shape for result in results} == {(1, 1)}
        answers.append([int(result.as_numpy("OUTPUT")[0][0]) for result in results])
    assert answers == expected(dyna, ids)


@pytest.mark.parametrize("dyna", [False, True], ids=["simple", "dyna"])
def test_interleaved_sequences_on_one_grpc_stream(rpc: grpcclient.InferenceServerClient, dyna: bool) -> None:
    """As simple_grpc_sequence_stream_infer_client [--dyna], with the three sequences' requests
    interleaved on the stream rather than one sequence after another: each keeps its own answers."""
    ids = sequence_ids(dyna, offset=20 + dyna)
    int_model, string_model = sequence_models(dyna)
    sequences = list(zip((FIRST, SECOND, THIRD), ids, (int_model, int_model, string_model), strict=True))
    stream = Stream(rpc)
    try:
        for count in range(1, len(FIRST) + 1):
            for values, sequence_id, model in sequences:
                rpc.async_stream_infer(**sequence_step(grpcclient, values, count, sequence_id, model))
        answers = stream.take(3 * len(FIRST))
    finally:
        stream.close()
    assert [error for _, error in answers] == [None] * len(answers)
    by_request = {result.get_response().id: int(result.as_numpy("OUTPUT")[0][0]) for result, _ in answers}
    got = [
        [by_request[f"{sequence_id}_{count}"] for count in range(1, len(FIRST) + 1)] for sequence_id in ids
    ]
    assert got == expected(dyna, ids)


@pytest.mark.asyncio(loop_scope="module")
async def test_sequences_through_the_aio_stream(grpc_address: str) -> None:
    """As simple_grpc_aio_sequence_stream_infer_client --dyna: tritonclient.grpc.aio's stream_infer
    fed by an async iterator of the three sequences' requests."""
    ids = sequence_ids(True, offset=30)
    int_model, string_model = sequence_models(True)
    sequences = list(zip((FIRST, SECOND, THIRD), ids, (int_model, int_model, string_model), strict=True))

    async def requests() -> AsyncIterator[dict[str, Any]]:
        for values, sequence_id, model in sequences:
            for count in range(1, len(values) + 1):
                yield sequence_step(grpcaio, values, count, sequence_id, model)

    by_request = {}
    async with grpcaio.InferenceServerClient(grpc_address) as client:
        async for result, error in client.stream_infer(inputs_iterator=requests(), stream_timeout=30):
            assert error is None
            by_request[result.get_response().id] = int(result.as_numpy("OUTPUT")[0][0])
            if len(by_request) == 3 * len(FIRST):
                break
    got = [
        [by_request[f"{sequence_id}_{count}"] for count in range(1, len(FIRST) + 1)] for sequence_id in ids
    ]
    assert got == expected(True, ids)


def test_the_string_dyna_model_refuses_an_id_that_is_no_integer(
    rpc: grpcclient.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException, match="correlation id 'not-a-number' is not a decimal"):
        rpc.infer(**sequence_step(grpcclient, [5], 1, "not-a-number", "simple_string_dyna_sequence"))


# repeat_int32


def repeat_inputs(values: list[int], delays_ms: list[int], wait_ms: int) -> list[grpcclient.InferInput]:
    return [
        tensor(grpcclient, "IN", np.array(values, dtype=np.int32)),
        tensor(grpcclient, "DELAY", np.array(delays_ms, dtype=np.uint32)),
        tensor(grpcclient, "WAIT", np.array([wait_ms], dtype=np.uint32)),
    ]


def is_final(result: grpcclient.InferResult) -> bool:
    return bool(result.get_response().parameters["triton_final_response"].bool_param)


def test_repeat_int32_sends_one_response_per_element_then_the_final_flag(
    rpc: grpcclient.InferenceServerClient,
) -> None:
    """As simple_grpc_custom_repeat (shorter delays): OUT = IN[i], IDX = i, in order, then an
    empty final response."""
    stream = Stream(rpc)
    try:
        rpc.async_stream_infer(
            "repeat_int32",
            repeat_inputs(list(range(100, 105)), [20] * 5, wait_ms=10),
            request_id="r",
            enable_empty_final_response=True,
        )
        answers = stream.take(6)
    finally:
        stream.close()
    assert [error for _, error in answers] == [None] * 6
    results = [result for result, _ in answers]
    assert [(int(r.as_numpy("OUT")[0]), int(r.as_numpy("IDX")[0])) for r in results[:5]] == [
        (100 + i, i) for i in range(5)
    ]
    assert {r.as_numpy("OUT").dtype.name for r in results[:5]} == {"int32"}
    assert {r.as_numpy("IDX").dtype.name for r in results[:5]} == {"uint32"}
    assert [is_final(r) for r in results] == [False] * 5 + [True]
    assert results[5].get_response().outputs == []


def test_repeat_int32_answers_an_empty_in_with_the_final_flag_alone(
    rpc: grpcclient.InferenceServerClient,
) -> None:
    stream = Stream(rpc)
    try:
        rpc.async_stream_infer(
            "repeat_int32",
            repeat_inputs([], [], wait_ms=0),
            request_id="empty",
            enable_empty_final_response=True,
        )
        [(result, error)] = stream.take(1)
    finally:
        stream.close()
    assert error is None
    assert is_final(result) and result.get_response().outputs == []


def test_repeat_int32_interleaves_requests_when_wait_is_short(rpc: grpcclient.InferenceServerClient) -> None:
    """WAIT 0 frees the instance at once: a second request's quick response overtakes the first
    request's delayed one, on the same stream and the one instance."""
    stream = Stream(rpc)
    try:
        rpc.async_stream_infer("repeat_int32", repeat_inputs([1], [1500], wait_ms=0), request_id="slow")
        rpc.async_stream_infer("repeat_int32", repeat_inputs([2], [0], wait_ms=0), request_id="quick")
        answers = stream.take(2)
    finally:
        stream.close()
    assert [(result.get_response().id, int(result.as_numpy("OUT")[0])) for result, _ in answers] == [
        ("quick", 2),
        ("slow", 1),
    ]


def test_repeat_int32_refuses_in_and_delay_of_different_shapes(rpc: grpcclient.InferenceServerClient) -> None:
    stream = Stream(rpc)
    try:
        rpc.async_stream_infer("repeat_int32", repeat_inputs([1, 2], [0], wait_ms=0))
        [(result, error)] = stream.take(1)
    finally:
        stream.close()
    assert result is None
    assert "expected IN and DELAY shape to match, got [2] and [1]" in str(error)


# The configurations Triton serves


@pytest.mark.parametrize(
    ("model", "max_batch_size", "inputs", "outputs"),
    [
        ("simple_string", 8, {"INPUT0": ("TYPE_STRING", [16]), "INPUT1": ("TYPE_STRING", [16])},
         {"OUTPUT0": ("TYPE_STRING", [16]), "OUTPUT1": ("TYPE_STRING", [16])}),
        ("simple_identity", 8, {"INPUT0": ("TYPE_STRING", [-1])}, {"OUTPUT0": ("TYPE_STRING", [-1])}),
        ("simple_sequence", 8, {"INPUT": ("TYPE_INT32", [1])}, {"OUTPUT": ("TYPE_INT32", [1])}),
        ("simple_dyna_sequence", 8, {"INPUT": ("TYPE_INT32", [1])}, {"OUTPUT": ("TYPE_INT32", [1])}),
        ("simple_string_dyna_sequence", 8, {"INPUT": ("TYPE_INT32", [1])}, {"OUTPUT": ("TYPE_INT32", [1])}),
        ("repeat_int32", 0,
         {"IN": ("TYPE_INT32", [-1]), "DELAY": ("TYPE_UINT32", [-1]), "WAIT": ("TYPE_UINT32", [1])},
         {"OUT": ("TYPE_INT32", [1]), "IDX": ("TYPE_UINT32", [1])}),
    ],
)  # fmt: skip
def test_each_model_has_the_tensors_triton_documents(
    http: httpclient.InferenceServerClient,
    model: str,
    max_batch_size: int,
    inputs: dict[str, tuple[str, list[int]]],
    outputs: dict[str, tuple[str, list[int]]],
) -> None:
    config = http.get_model_config(model)
    assert config.get("max_batch_size", 0) == max_batch_size
    assert {t["name"]: (t["data_type"], [int(d) for d in t["dims"]]) for t in config["input"]} == inputs
    assert {t["name"]: (t["data_type"], [int(d) for d in t["dims"]]) for t in config["output"]} == outputs


def test_the_batchers_and_the_decoupled_policy_are_as_triton_configures_them(
    http: httpclient.InferenceServerClient,
) -> None:
    def controls(model: str) -> dict[str, str]:
        batching = http.get_model_config(model)["sequence_batching"]
        return {entry["name"]: entry["control"][0]["kind"] for entry in batching["control_input"]}

    assert controls("simple_sequence") == {
        "START": "CONTROL_SEQUENCE_START",
        "READY": "CONTROL_SEQUENCE_READY",
    }
    assert controls("simple_dyna_sequence") == {
        "START": "CONTROL_SEQUENCE_START",
        "END": "CONTROL_SEQUENCE_END",
        "READY": "CONTROL_SEQUENCE_READY",
        "CORRID": "CONTROL_SEQUENCE_CORRID",
    }
    dyna = http.get_model_config("simple_dyna_sequence")["sequence_batching"]
    assert dyna["oldest"]["max_candidate_sequences"] == 1024
    assert int(dyna["max_sequence_idle_microseconds"]) == 10_000_000
    assert "oldest" not in http.get_model_config("simple_sequence")["sequence_batching"]  # Direct
    assert http.get_model_config("repeat_int32")["model_transaction_policy"]["decoupled"] is True
