"""Just enough of the protobuf wire format to route Triton's gRPC messages without decoding them.

A `ModelInferRequest` carries its tensors in `raw_input_contents`, megabytes that the gateway
must relay and never look at. Parsing it with a message class, even one declaring only the
routing fields, copies every unknown field, at a cost that grows with the tensors; stepping over
the fields by their length prefixes costs the same whatever the size (docs/benchmarks.md,
"Measurements behind the code"). The same
stepping reads the few fields a paid stream needs from each response, and appends fields to a
serialized message (protobuf keeps the last value of a scalar field, and merges map entries).

Field numbers are those of Triton's `grpc_service.proto`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tritonfleet.gateway.errors import MalformedRequest

# ModelInferRequest / ModelInferResponse (and the name/version of the model-scoped requests).
MODEL_NAME, MODEL_VERSION, ID, PARAMETERS = 1, 2, 3, 4
RESPONSE_OUTPUTS = 5
# ModelStreamInferResponse.
ERROR_MESSAGE, INFER_RESPONSE = 1, 2
# InferParameter's fields; a map entry's key and value.
BOOL_PARAM, INT64_PARAM, STRING_PARAM, UINT64_PARAM = 1, 2, 3, 5
ENTRY_KEY, ENTRY_VALUE = 1, 2

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

# Asks Triton to close each decoupled request with a response of its own (flag-only finals are
# otherwise not sent), and marks the response that completes a request.
EMPTY_FINAL_PARAMETER = "triton_enable_empty_final_response"
FINAL_PARAMETER = "triton_final_response"


class WireError(MalformedRequest):
    """The bytes are not a well-formed protobuf message."""


@dataclass(frozen=True, slots=True)
class Route:
    """The fields the gateway routes on: a model-scoped request's name and version, and, for an
    inference request, its own id ("" when absent, as protobuf has it)."""

    model: str
    version: str
    request_id: str


@dataclass(frozen=True, slots=True)
class StreamAnswer:
    """What a paid stream needs of one `ModelStreamInferResponse`."""

    failed: bool
    request_id: str
    # True: Triton marked it the request's last; False: more follow; None: not marked (an error
    # answered before inference, or a Triton that predates the marker).
    final: bool | None
    has_outputs: bool

    @property
    def completes(self) -> bool:
        return self.final is not False


def read_route(message: bytes) -> Route:
    found = {MODEL_NAME: b"", MODEL_VERSION: b"", ID: b""}
    for number, wire_type, start, end in fields(message):
        if number in found and wire_type == LENGTH:
            found[number] = message[start:end]
    return Route(_text(found[MODEL_NAME]), _text(found[MODEL_VERSION]), _text(found[ID]))


def wants_empty_final(request: bytes) -> bool:
    """Whether a `ModelInferRequest` asks for empty final responses itself."""
    return bool_parameters(request, PARAMETERS).get(EMPTY_FINAL_PARAMETER, False)


def read_stream_answer(message: bytes) -> StreamAnswer:
    failed, request_id, final, has_outputs = False, "", None, False
    for number, wire_type, start, end in fields(message):
        if wire_type != LENGTH:
            continue
        if number == ERROR_MESSAGE:
            failed = end > start
        elif number == INFER_RESPONSE:
            response = message[start:end]
            request_id, has_outputs = _response_id_and_outputs(response, request_id, has_outputs)
            final = bool_parameters(response, PARAMETERS).get(FINAL_PARAMETER, final)
    return StreamAnswer(failed, request_id, final, has_outputs)


def with_id(request: bytes, request_id: str) -> bytes:
    """A `ModelInferRequest` with this id instead of its own; its tensors are left as they are."""
    return request + field(ID, request_id.encode())


def with_empty_final(request: bytes) -> bytes:
    """A `ModelInferRequest` that asks for empty final responses."""
    value = field(ENTRY_VALUE, tag(BOOL_PARAM, VARINT) + b"\x01")
    return request + field(PARAMETERS, field(ENTRY_KEY, EMPTY_FINAL_PARAMETER.encode()) + value)


def with_response_id(message: bytes, request_id: str) -> bytes:
    """A `ModelStreamInferResponse` whose inner response carries `request_id` instead."""
    outer: list[bytes] = []
    inner: list[bytes] = []
    for number, wire_type, start, end, whole in _spans(message):
        if number == INFER_RESPONSE and wire_type == LENGTH:
            response = message[start:end]
            inner += [response[s:e] for n, _, _, _, (s, e) in _spans(response) if n != ID]
        else:
            outer.append(message[whole[0] : whole[1]])
    if request_id:
        inner.append(field(ID, request_id.encode()))
    return b"".join([*outer, field(INFER_RESPONSE, b"".join(inner))])


def bool_parameters(message: bytes, number: int) -> dict[str, bool]:
    """The bool entries of a `map<string, InferParameter>` field; later entries win."""
    found: dict[str, bool] = {}
    for entry_number, wire_type, start, end in fields(message):
        if entry_number != number or wire_type != LENGTH:
            continue
        key, value = b"", None
        entry = message[start:end]
        for inner, inner_type, s, e in fields(entry):
            if inner == ENTRY_KEY and inner_type == LENGTH:
                key = entry[s:e]
            elif inner == ENTRY_VALUE and inner_type == LENGTH:
                value = _bool_param(entry[s:e])
        if value is not None:
            found[_text(key)] = value
    return found


def infer_parameters(message: bytes, names: frozenset[str]) -> dict[str, bool | int | str]:
    """The entries named in `names` of a `ModelInferRequest`'s parameters (bool, integer or
    string values; later entries win), stepping over every other field, tensors included."""
    found: dict[str, bool | int | str] = {}
    for number, wire_type, start, end in fields(message):
        if number != PARAMETERS or wire_type != LENGTH:
            continue
        key, value = "", None
        entry = message[start:end]
        for inner, inner_type, s, e in fields(entry):
            if inner == ENTRY_KEY and inner_type == LENGTH:
                key = _text(entry[s:e])
            elif inner == ENTRY_VALUE and inner_type == LENGTH:
                value = _param(entry[s:e])
        if key in names and value is not None:
            found[key] = value
    return found


def fields(message: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start, end) of each field's value, in order; the value of a
    length-delimited field is what its length prefix covers."""
    for number, wire_type, start, end, _ in _spans(message):
        yield number, wire_type, start, end


def field(number: int, value: bytes) -> bytes:
    """One length-delimited field."""
    return tag(number, LENGTH) + varint(len(value)) + value


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _spans(message: bytes) -> Iterator[tuple[int, int, int, int, tuple[int, int]]]:
    """Like `fields`, plus the span of the whole field, tag included."""
    pos, size = 0, len(message)
    while pos < size:
        first = pos
        key, pos = _read_varint(message, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            start = pos
            _, pos = _read_varint(message, pos)
        elif wire_type == LENGTH:
            length, start = _read_varint(message, pos)
            pos = start + length
        elif wire_type == FIXED64:
            start, pos = pos, pos + 8
        elif wire_type == FIXED32:
            start, pos = pos, pos + 4
        else:
            raise WireError(f"unsupported wire type {wire_type} in field {number}")
        if pos > size or number == 0:
            raise WireError("truncated message" if pos > size else "field number 0")
        yield number, wire_type, start, pos, (first, pos)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _response_id_and_outputs(response: bytes, request_id: str, has_outputs: bool) -> tuple[str, bool]:
    for number, wire_type, start, end in fields(response):
        if number == ID and wire_type == LENGTH:
            request_id = _text(response[start:end])
        elif number == RESPONSE_OUTPUTS:
            has_outputs = True
    return request_id, has_outputs


def _bool_param(value: bytes) -> bool | None:
    found = None
    for number, wire_type, start, _ in fields(value):
        if number == BOOL_PARAM and wire_type == VARINT:
            found = _read_varint(value, start)[0] != 0
    return found


def _param(value: bytes) -> bool | int | str | None:
    """An `InferParameter`'s value (the last one set); None for a double or no value."""
    found: bool | int | str | None = None
    for number, wire_type, start, end in fields(value):
        if wire_type == VARINT and number in (BOOL_PARAM, INT64_PARAM, UINT64_PARAM):
            raw = _read_varint(value, start)[0]
            if number == BOOL_PARAM:
                found = raw != 0
            else:
                # int64 is sent as its 64-bit two's complement.
                found = raw - (1 << 64) if number == INT64_PARAM and raw >= 1 << 63 else raw
        elif number == STRING_PARAM and wire_type == LENGTH:
            found = _text(value[start:end])
    return found


def _text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise WireError(f"a string field is not UTF-8: {exc}") from exc
