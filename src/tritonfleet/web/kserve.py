"""KServe v2 inference bodies: JSON requests out, JSON or binary-tensor answers back.

Outputs are asked for as binary data, since an image as a JSON list of numbers is several
times its size; the answer is then a JSON header of `Inference-Header-Content-Length` bytes
followed by each binary output's raw bytes, in output order.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonfleet.web.errors import BadUpstream

# KServe datatype → numpy dtype (little-endian, as Triton sends them); BYTES is an object array.
DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    array: np.ndarray


def request_body(inputs: list[Tensor], outputs: list[str]) -> dict[str, Any]:
    """A JSON infer request; every named output is asked for as binary data."""
    return {
        "inputs": [_input(tensor) for tensor in inputs],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
    }


def _input(tensor: Tensor) -> dict[str, Any]:
    flat = tensor.array.reshape(-1)
    if tensor.datatype == "BYTES":
        data: list[Any] = [_text(item) for item in flat]
    else:
        data = flat.tolist()
    return {"name": tensor.name, "shape": list(tensor.array.shape), "datatype": tensor.datatype, "data": data}


def _text(item: Any) -> str:
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)


def parse_response(body: bytes, header_length: str | None) -> list[Tensor]:
    """The outputs of an infer answer, JSON or binary."""
    size = int(header_length) if header_length else len(body)
    try:
        header = json.loads(body[:size])
        outputs = header["outputs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadUpstream("the gateway's infer answer is not a KServe v2 response") from exc
    tensors, offset = [], size
    for output in outputs:
        binary_size = (output.get("parameters") or {}).get("binary_data_size")
        if binary_size is None:
            array = _from_json(output)
        else:
            array = _from_binary(output, body[offset : offset + binary_size])
            offset += binary_size
        tensors.append(Tensor(output["name"], output["datatype"], array))
    return tensors


def _from_json(output: dict[str, Any]) -> np.ndarray:
    dtype = DTYPES.get(output["datatype"], np.object_)
    return np.array(output.get("data", []), dtype=dtype).reshape(output["shape"])


def _from_binary(output: dict[str, Any], raw: bytes) -> np.ndarray:
    datatype, shape = output["datatype"], output["shape"]
    if datatype == "BYTES":
        return np.array(_split_bytes(raw), dtype=np.object_).reshape(shape)
    if datatype not in DTYPES:
        raise BadUpstream(f"output {output['name']} has a datatype this page cannot show: {datatype}")
    return np.frombuffer(raw, dtype=np.dtype(DTYPES[datatype]).newbyteorder("<")).reshape(shape)


def _split_bytes(raw: bytes) -> list[bytes]:
    """BYTES tensors are serialised as (uint32 little-endian length, bytes) per element."""
    items, offset = [], 0
    while offset + 4 <= len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return items
