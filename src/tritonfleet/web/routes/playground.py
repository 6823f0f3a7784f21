"""Every model the cluster serves: its metadata, and one inference from a generated form."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header

from tritonfleet.web import contract
from tritonfleet.web.api import InferBody
from tritonfleet.web.errors import BadInput
from tritonfleet.web.inference import infer
from tritonfleet.web.playground import render, to_tensor
from tritonfleet.web.service import WebState, state_of

router = APIRouter(prefix="/api/models", tags=["playground"])
State = Annotated[WebState, Depends(state_of)]


@router.get("")
async def models(state: State) -> dict[str, Any]:
    found = await state.catalog.models()
    return {"models": [{**m.json(), "text_to_image": contract.implements(m)} for m in found]}


@router.get("/{name}")
async def model(name: str, state: State) -> dict[str, Any]:
    return (await state.catalog.model(name)).json()


@router.post("/{name}/infer")
async def run(
    name: str, body: InferBody, state: State, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    info = await state.catalog.model(name)
    unknown = sorted(set(body.inputs) - {spec.name for spec in info.inputs})
    if unknown:
        raise BadInput(f"{name} has no input named {', '.join(unknown)}")
    missing = [spec.name for spec in info.inputs if spec.name not in body.inputs]
    if missing:
        raise BadInput(f"give a value for {', '.join(missing)}")
    tensors = [to_tensor(spec, body.inputs[spec.name]) for spec in info.inputs]
    outputs = [spec.name for spec in info.outputs]
    served = await infer(state.gateway, name, body.version or None, tensors, outputs, authorization)
    return {"model": name, "outputs": [render(tensor) for tensor in served.outputs], **served.facts()}
