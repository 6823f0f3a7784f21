from __future__ import annotations

import numpy as np
import pytest

from tritonfleet.web.catalog import TensorSpec
from tritonfleet.web.errors import BadInput, TooLarge
from tritonfleet.web.kserve import Tensor
from tritonfleet.web.playground import render, resolve_shape, to_tensor

IMAGE = TensorSpec("IMAGE", "FP32", (-1, 8, 8))
INPUT0 = TensorSpec("INPUT0", "INT32", (-1, 16))


def test_one_number_fills_the_whole_tensor_with_variable_dimensions_as_one() -> None:
    tensor = to_tensor(INPUT0, 3)
    assert tensor.array.shape == (1, 16) and tensor.array.dtype == np.int32 and (tensor.array == 3).all()


def test_an_8x8_drawing_fills_a_batched_image_input() -> None:
    tensor = to_tensor(IMAGE, [[float(i)] * 8 for i in range(8)])
    assert tensor.array.shape == (1, 8, 8) and tensor.array[0, 7, 0] == 7.0


def test_a_flat_list_takes_the_declared_shape_and_a_full_batch_is_kept() -> None:
    assert resolve_shape(IMAGE, (128,)) == (2, 8, 8)
    assert resolve_shape(IMAGE, (3, 8, 8)) == (3, 8, 8)


def test_a_wrong_count_of_values_names_the_expected_shape() -> None:
    with pytest.raises(BadInput, match=r"INPUT0: expected shape \[-1, 16\], got \[3\]"):
        to_tensor(INPUT0, [1, 2, 3])


def test_integers_are_checked_for_range_and_wholeness() -> None:
    with pytest.raises(BadInput, match="between -2147483648 and 2147483647"):
        to_tensor(INPUT0, 2**40)
    with pytest.raises(BadInput, match="whole numbers"):
        to_tensor(INPUT0, 1.5)
    big = to_tensor(TensorSpec("SEED", "INT64", (1,)), 2**62 + 1)
    assert int(big.array[0]) == 2**62 + 1, "no float rounding of large integers"


def test_text_where_numbers_are_expected_is_a_bad_input() -> None:
    with pytest.raises(BadInput, match="expected numbers"):
        to_tensor(IMAGE, "seven")


def test_bytes_inputs_take_text() -> None:
    tensor = to_tensor(TensorSpec("PROMPT", "BYTES", (1,)), "a cat")
    assert tensor.array.tolist() == [b"a cat"]


def test_a_tensor_over_the_element_limit_is_too_large() -> None:
    with pytest.raises(TooLarge, match="at most 100"):
        to_tensor(IMAGE, [0.0] * 128, max_elements=100)


def test_uint8_hwc_outputs_are_shown_as_images_and_numbers_as_rows() -> None:
    image = render(Tensor("IMAGES", "UINT8", np.zeros((2, 8, 8, 3), np.uint8)))
    assert image["kind"] == "image" and len(image["images"]) == 2
    scores = render(Tensor("P", "FP32", np.array([[0.25, 0.75]], np.float32)))
    assert scores["kind"] == "table" and scores["rows"] == [[0.25, 0.75]] and not scores["truncated"]
    label = render(Tensor("LABEL", "INT64", np.array([[7]])))
    assert label["rows"] == [[7]]


def test_a_huge_output_table_is_cut_and_says_so() -> None:
    shown = render(Tensor("X", "FP32", np.zeros((10_000, 2), np.float32)))
    assert shown["truncated"] and len(shown["rows"]) == 2048
