import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from tritonfleet.gateway.grpc.wire import (
    Route,
    WireError,
    read_route,
    read_stream_answer,
    wants_empty_final,
    with_empty_final,
    with_id,
    with_response_id,
)


def infer_request(request_id: str = "", version: str = "", size: int = 16) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="simple", model_version=version, id=request_id)
    request.parameters["priority"].int64_param = 3
    for name in ("INPUT0", "INPUT1"):
        request.inputs.add(name=name, datatype="INT32", shape=[1, size])
        request.raw_input_contents.append(np.arange(size, dtype=np.int32).tobytes())
    request.outputs.add(name="OUTPUT0")
    return request


def stream_response(
    request_id: str, final: bool | None, outputs: int = 1, error: str = ""
) -> service_pb2.ModelStreamInferResponse:
    response = service_pb2.ModelStreamInferResponse(error_message=error)
    inner = response.infer_response
    inner.model_name, inner.id = "countdown", request_id
    for _ in range(outputs):
        inner.outputs.add(name="COUNT", datatype="INT32", shape=[1])
        inner.raw_output_contents.append(np.array([7], dtype=np.int32).tobytes())
    if final is not None:
        inner.parameters["triton_final_response"].bool_param = final
    return response


def test_the_route_of_an_inference_request_is_its_name_version_and_id() -> None:
    message = infer_request("req-1", "2").SerializeToString()
    assert read_route(message) == Route("simple", "2", "req-1")


def test_absent_fields_read_as_empty_strings_as_protobuf_has_them() -> None:
    assert read_route(service_pb2.ModelReadyRequest(name="simple").SerializeToString()) == Route(
        "simple", "", ""
    )
    assert read_route(b"") == Route("", "", "")


def test_the_last_value_of_a_repeated_scalar_field_wins() -> None:
    message = (
        infer_request("first").SerializeToString()
        + service_pb2.ModelInferRequest(id="last").SerializeToString()
    )
    assert read_route(message).request_id == service_pb2.ModelInferRequest.FromString(message).id == "last"


@pytest.mark.parametrize(
    "message", [b"\x0a\x05abc", b"\x0a", b"\x0b", b"\x00\x01"], ids=["short", "no-len", "group", "zero"]
)
def test_malformed_bytes_raise_wire_error(message: bytes) -> None:
    with pytest.raises(WireError):
        read_route(message)


def test_an_id_and_the_empty_final_flag_are_added_without_touching_the_tensors() -> None:
    original = infer_request("client-id", size=1024)
    changed = service_pb2.ModelInferRequest.FromString(
        with_empty_final(with_id(original.SerializeToString(), "charge-7"))
    )
    assert changed.id == "charge-7"
    assert changed.parameters["triton_enable_empty_final_response"].bool_param
    assert changed.parameters["priority"].int64_param == 3
    assert list(changed.raw_input_contents) == list(original.raw_input_contents)
    assert changed.inputs == original.inputs and changed.outputs == original.outputs


def test_a_request_asking_for_empty_finals_itself_is_recognised() -> None:
    request = infer_request()
    assert not wants_empty_final(request.SerializeToString())
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    assert wants_empty_final(request.SerializeToString())
    request.parameters["triton_enable_empty_final_response"].bool_param = False
    assert not wants_empty_final(request.SerializeToString())


@pytest.mark.parametrize(
    ("response", "failed", "final", "has_outputs", "completes"),
    [
        (stream_response("a", final=False), False, False, True, False),
        (stream_response("a", final=True), False, True, True, True),
        (stream_response("a", final=True, outputs=0), False, True, False, True),
        (stream_response("a", final=True, outputs=0, error="bad N"), True, True, False, True),
        (stream_response("a", final=None, outputs=0, error="unknown model"), True, None, False, True),
    ],
    ids=["more-to-come", "last", "empty-final", "failed", "failed-unmarked"],
)
def test_a_stream_answer_says_whether_it_completes_its_request(
    response: service_pb2.ModelStreamInferResponse,
    failed: bool,
    final: bool | None,
    has_outputs: bool,
    completes: bool,
) -> None:
    answer = read_stream_answer(response.SerializeToString())
    assert (answer.request_id, answer.failed, answer.final, answer.has_outputs) == (
        "a",
        failed,
        final,
        has_outputs,
    )
    assert answer.completes is completes


def test_a_response_gets_the_clients_id_back_and_nothing_else_changes() -> None:
    response = stream_response("charge-7", final=False)
    for client_id in ("mine", ""):
        changed = service_pb2.ModelStreamInferResponse.FromString(
            with_response_id(response.SerializeToString(), client_id)
        )
        want = service_pb2.ModelStreamInferResponse()
        want.CopyFrom(response)
        want.infer_response.id = client_id
        assert changed == want
