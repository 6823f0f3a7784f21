from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from tritonfleet.web.errors import BadUpstream
from tritonfleet.web.kserve import Tensor, parse_response, request_body


def binary_answer(outputs: list[tuple[str, str, list[int], bytes]]) -> tuple[bytes, str]:
    header = {
        "outputs": [
            {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(raw)}}
            for n, d, s, raw in outputs
        ]
    }
    head = json.dumps(header).encode()
    return head + b"".join(raw for *_, raw in outputs), str(len(head))


def test_a_request_carries_json_inputs_and_asks_for_binary_outputs() -> None:
    body = request_body(
        [
            Tensor("PROMPT", "BYTES", np.array([b"a cat"], dtype=np.object_)),
            Tensor("N", "INT32", np.ones((1, 2))),
        ],
        ["IMAGES"],
    )
    assert body["inputs"][0] == {"name": "PROMPT", "shape": [1], "datatype": "BYTES", "data": ["a cat"]}
    assert body["inputs"][1]["data"] == [1, 1] and body["inputs"][1]["shape"] == [1, 2]
    assert body["outputs"] == [{"name": "IMAGES", "parameters": {"binary_data": True}}]


def test_binary_outputs_are_split_in_order_and_typed() -> None:
    images = np.arange(12, dtype=np.uint8)
    scores = np.array([0.5, 0.25], dtype=np.float32)
    body, length = binary_answer(
        [("IMAGES", "UINT8", [1, 2, 2, 3], images.tobytes()), ("SCORES", "FP32", [2], scores.tobytes())]
    )
    first, second = parse_response(body, length)
    assert first.array.shape == (1, 2, 2, 3) and (first.array.reshape(-1) == images).all()
    assert second.array.dtype == np.float32 and second.array.tolist() == [0.5, 0.25]


def test_binary_bytes_outputs_are_length_prefixed_strings() -> None:
    raw = b"".join(struct.pack("<I", len(s)) + s for s in (b"seven", b""))
    body, length = binary_answer([("TEXT", "BYTES", [2], raw)])
    (text,) = parse_response(body, length)
    assert text.array.tolist() == [b"seven", b""]


def test_json_outputs_are_read_without_a_header_length() -> None:
    body = json.dumps(
        {"outputs": [{"name": "L", "datatype": "INT64", "shape": [1, 1], "data": [7]}]}
    ).encode()
    (label,) = parse_response(body, None)
    assert label.array.dtype == np.int64 and label.array.tolist() == [[7]]


def test_an_answer_that_is_not_kserve_is_an_upstream_error() -> None:
    with pytest.raises(BadUpstream):
        parse_response(b"<html>", None)
