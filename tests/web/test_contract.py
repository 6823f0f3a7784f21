from __future__ import annotations

import pytest

from tritonfleet.web import contract
from tritonfleet.web.catalog import ModelInfo, TensorSpec
from tritonfleet.web.errors import BadInput


def text_to_image(batched: bool = False, seed_type: str = "INT64") -> ModelInfo:
    shape = (-1, 1) if batched else (1,)
    types = {**contract.INPUTS, "SEED": seed_type}
    return ModelInfo(
        name="sd",
        versions=("1",),
        platform="python",
        inputs=tuple(TensorSpec(name, datatype, shape) for name, datatype in types.items()),
        outputs=(TensorSpec("IMAGES", "UINT8", (-1, -1, -1, 3)),),
    )


def test_a_model_with_the_contracts_tensors_implements_it_batched_or_not() -> None:
    assert contract.implements(text_to_image())
    assert contract.implements(text_to_image(batched=True))


def test_a_model_with_a_wrong_datatype_does_not_implement_it() -> None:
    assert not contract.implements(text_to_image(seed_type="INT32"))


def test_the_inputs_take_the_models_declared_shapes() -> None:
    prompt = contract.check("a cat", 4, 1, 7.5, 1)
    shapes = {t.name: t.array.shape for t in contract.tensors(text_to_image(batched=True), prompt)}
    assert shapes == {name: (1, 1) for name in contract.INPUTS}


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (("   ", 20, 1, 7.5, 0), "the prompt is empty"),
        (("x" * 1001, 20, 1, 7.5, 0), "the prompt is too long"),
        (("a cat", 0, 1, 7.5, 0), "steps must be between 1 and 150; got 0"),
        (("a cat", 20, 9, 7.5, 0), "samples must be between 1 and 4"),
        (("a cat", 20, 1, -1.0, 0), "guidance scale must be between"),
        (("a cat", 20, 1, 7.5, -5), "seed must be between"),
    ],
)
def test_a_bad_request_is_refused_with_a_sentence_saying_why(values: tuple, says: str) -> None:
    with pytest.raises(BadInput, match=says):
        contract.check(*values)
