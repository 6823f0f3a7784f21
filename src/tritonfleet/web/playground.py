"""Form values → input tensors, and output tensors → what a page shows (tables, images, text).

The forms are generated from Triton's model metadata, so nothing here knows a model: a value
is a number or string (filled into the whole tensor) or a nested list, checked against the
declared datatype and shape.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tritonfleet.web import png
from tritonfleet.web.catalog import TensorSpec
from tritonfleet.web.errors import BadInput, TooLarge
from tritonfleet.web.kserve import DTYPES, Tensor

MAX_INPUT_ELEMENTS = 1 << 20
# What a page can show of one output; beyond that it says the table was cut.
MAX_SHOWN_VALUES = 4096
MAX_SHOWN_IMAGES = 16
IMAGE_CHANNELS = (1, 3, 4)
MIN_IMAGE_SIDE = 4


def to_tensor(spec: TensorSpec, value: Any, max_elements: int = MAX_INPUT_ELEMENTS) -> Tensor:
    if spec.datatype not in DTYPES:
        raise BadInput(f"{spec.name}: datatype {spec.datatype} is not supported by the playground")
    if np.ndim(value) == 0 and not isinstance(value, list):
        concrete = tuple(1 if dim == -1 else dim for dim in spec.shape)
        _limit(spec.name, math.prod(concrete), max_elements)
        array = np.full(concrete, _scalar(spec, value), dtype=DTYPES[spec.datatype])
        return Tensor(spec.name, spec.datatype, array)
    array = _array(spec, value)
    _limit(spec.name, array.size, max_elements)
    return Tensor(spec.name, spec.datatype, array.reshape(resolve_shape(spec, array.shape)))


def _limit(name: str, count: int, max_elements: int) -> None:
    if count > max_elements:
        raise TooLarge(f"{name}: {count} values, at most {max_elements}")


def _scalar(spec: TensorSpec, value: Any) -> Any:
    return _array(spec, [value]).reshape(-1)[0]


def _array(spec: TensorSpec, value: Any) -> np.ndarray:
    if spec.datatype == "BYTES":
        try:
            raw = np.array(value, dtype=np.object_)
        except ValueError as exc:
            raise BadInput(f"{spec.name}: the nested lists are ragged") from exc
        return np.vectorize(_text_bytes, otypes=[np.object_])(raw) if raw.size else raw
    try:
        numbers = np.array(value, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        expected = f"expected numbers ({spec.datatype}), as a value or nested lists"
        raise BadInput(f"{spec.name}: {expected}") from exc
    dtype = np.dtype(DTYPES[spec.datatype])
    if dtype.kind in "iu":
        return _integers(spec, value, numbers, dtype)
    if dtype.kind == "b" and np.any((numbers != 0) & (numbers != 1)):
        raise BadInput(f"{spec.name}: BOOL takes 0 or 1 (or true/false)")
    finite = numbers[np.isfinite(numbers)]
    if dtype.kind == "f" and finite.size and np.abs(finite).max() > np.finfo(dtype).max:
        raise BadInput(f"{spec.name}: values out of range for {spec.datatype}")
    return numbers.astype(dtype)


def _text_bytes(item: Any) -> bytes:
    return item if isinstance(item, bytes) else str(item).encode()


def _integers(spec: TensorSpec, value: Any, numbers: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    info = np.iinfo(dtype)
    if not np.all(np.isfinite(numbers)) or np.any(numbers != np.round(numbers)):
        raise BadInput(f"{spec.name}: {spec.datatype} takes whole numbers")
    out_of_range = BadInput(f"{spec.name}: {spec.datatype} values lie between {info.min} and {info.max}")
    if numbers.size and (numbers.min() < info.min or numbers.max() > info.max):
        raise out_of_range
    # Again from the values themselves, since float64 rounds integers beyond 2**53.
    try:
        exact = np.array(value, dtype=np.uint64 if dtype.kind == "u" else np.int64)
    except (OverflowError, ValueError, TypeError) as exc:
        raise out_of_range from exc
    return exact.astype(dtype)


def resolve_shape(spec: TensorSpec, given: tuple[int, ...]) -> tuple[int, ...]:
    """The given shape if it fits the declared one; else the declared shape with its first
    variable dimension taking the count, so that a flat list of 64 fills [-1, 8, 8]."""
    declared = spec.shape
    if len(given) == len(declared) and all(d in (-1, g) for d, g in zip(declared, given, strict=True)):
        return given
    fixed = math.prod(d for d in declared if d != -1)
    count = math.prod(given)
    if fixed and count % fixed == 0 and (-1 in declared or count == fixed) and count:
        rest = count // fixed
        shape = []
        for dim in declared:
            shape.append(rest if dim == -1 else dim)
            rest = 1 if dim == -1 else rest
        return tuple(shape)
    raise BadInput(f"{spec.name}: expected shape {list(declared)}, got {list(given)} ({count} values)")


def render(tensor: Tensor) -> dict[str, Any]:
    """One output as the page shows it: images, a table of numbers, or text."""
    shown: dict[str, Any] = {
        "name": tensor.name,
        "datatype": tensor.datatype,
        "shape": list(tensor.array.shape),
    }
    if is_image(tensor):
        return {**shown, "kind": "image", "images": images(tensor.array)}
    if tensor.datatype == "BYTES":
        flat = [_text(item) for item in tensor.array.reshape(-1)[:MAX_SHOWN_VALUES]]
        return {**shown, "kind": "text", "values": flat, "truncated": tensor.array.size > MAX_SHOWN_VALUES}
    return {**shown, "kind": "table", **table(tensor.array)}


def is_image(tensor: Tensor) -> bool:
    shape = tensor.array.shape
    return (
        tensor.datatype == "UINT8"
        and len(shape) >= 3
        and shape[-1] in IMAGE_CHANNELS
        and min(shape[-3], shape[-2]) >= MIN_IMAGE_SIDE
    )


def images(array: np.ndarray) -> list[str]:
    height, width, channels = array.shape[-3:]
    return [png.data_url(image) for image in array.reshape(-1, height, width, channels)[:MAX_SHOWN_IMAGES]]


def table(array: np.ndarray) -> dict[str, Any]:
    """Rows of the last dimension; a scalar is one row of one value."""
    columns = array.shape[-1] if array.ndim else 1
    rows = array.reshape(-1, max(columns, 1)) if array.size else array.reshape(0, 0)
    keep = max(MAX_SHOWN_VALUES // max(columns, 1), 1)
    values = rows[:keep].tolist()
    return {"rows": values, "truncated": len(rows) > keep}


def _text(item: Any) -> str:
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
