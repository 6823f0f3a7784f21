"""Text to image through the gateway, for any model that implements the contract."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header

from tritonfleet.web import contract
from tritonfleet.web.api import GenerateBody
from tritonfleet.web.catalog import ModelInfo
from tritonfleet.web.errors import BadUpstream, NotFound
from tritonfleet.web.inference import infer
from tritonfleet.web.playground import images
from tritonfleet.web.service import WebState, state_of

router = APIRouter(prefix="/api/generate", tags=["generate"])
State = Annotated[WebState, Depends(state_of)]
HELP_PAGE = "/help/text-to-image"
# Seeds drawn for the user stay small enough to read and type again.
RANDOM_SEED_BELOW = 2**31


@router.get("/models")
async def models(state: State) -> dict[str, Any]:
    """The text-to-image models the cluster serves now, with a time estimate per step."""
    found = [model for model in await state.catalog.models() if contract.implements(model)]
    return {
        "models": [{"name": m.name, "per_step_s": state.step_times.per_step_s(m.name)} for m in found],
        "limits": contract.limits(),
        "help": HELP_PAGE,
    }


@router.post("")
async def generate(
    body: GenerateBody, state: State, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    seed = body.seed if body.seed is not None else secrets.randbelow(RANDOM_SEED_BELOW)
    prompt = contract.check(body.prompt, body.steps, body.samples, body.guidance_scale, seed)
    model = await _model(state, body.model)
    served = await infer(
        state.gateway, model.name, None, contract.tensors(model, prompt), [contract.OUTPUT[0]], authorization
    )
    output = served.output(contract.OUTPUT[0])
    if output is None or output.array.ndim != 4:
        raise BadUpstream(f"{model.name} answered without an IMAGES tensor of [samples, height, width, 3]")
    state.step_times.observe(model.name, served.latency_ms / 1000, prompt.steps, prompt.samples)
    return {
        "model": model.name,
        "prompt": prompt.prompt,
        "seed": prompt.seed,
        "steps": prompt.steps,
        "samples": prompt.samples,
        "guidance_scale": prompt.guidance_scale,
        "images": images(output.array),
        **served.facts(),
    }


async def _model(state: WebState, name: str) -> ModelInfo:
    if name:
        model = await state.catalog.model(name)
        if not contract.implements(model):
            raise NotFound(f"'{name}' does not implement the text-to-image contract", help=HELP_PAGE)
        return model
    for model in await state.catalog.models():
        if contract.implements(model):
            return model
    raise NotFound("no node serves a text-to-image model now", help=HELP_PAGE)
