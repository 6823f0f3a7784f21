"""HTTP endpoints of the health checker.

Writes (register, heartbeat, deregister) need the cluster token. Reads need nothing: they
expose node addresses and loads to anyone who can reach the checker, which is acceptable while
it listens on a private network only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel

from tritonfleet.health.auth import checker_of, require_token
from tritonfleet.health.errors import InvalidNodeRequest
from tritonfleet.health.service import Checker
from tritonfleet.protocol import ErrorBody, Heartbeat, NodeList, RegisterResponse

CheckerDep = Annotated[Checker, Depends(checker_of)]
Model = Annotated[str | None, Query(min_length=1, description="Only nodes serving this model.")]
Version = Annotated[str | None, Query(min_length=1, description="With `model`: only this version.")]

WRITE_ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody}, 401: {"model": ErrorBody}}
READ_ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody}}

nodes = APIRouter(prefix="/v1/nodes", tags=["nodes"])
ops = APIRouter(tags=["operations"])


class HealthCheckerHealthz(BaseModel):
    status: str


@nodes.post(
    "/register",
    response_model=RegisterResponse,
    responses=WRITE_ERRORS,
    dependencies=[Depends(require_token)],
)
async def register(body: Heartbeat, checker: CheckerDep) -> RegisterResponse:
    """Add a node, or refresh it if known: the same upsert as a heartbeat."""
    checker.registry.heartbeat(body)
    return checker.acknowledge(body.node_id)


@nodes.post(
    "/{node_id}/heartbeat",
    response_model=RegisterResponse,
    responses=WRITE_ERRORS,
    dependencies=[Depends(require_token)],
)
async def heartbeat(node_id: str, body: Heartbeat, checker: CheckerDep) -> RegisterResponse:
    """Refresh a node; an unknown one is added, so the registry rebuilds itself after a restart."""
    if body.node_id != node_id:
        raise InvalidNodeRequest(f"path node id {node_id!r} differs from body node_id {body.node_id!r}")
    checker.registry.heartbeat(body)
    return checker.acknowledge(node_id)


@nodes.delete(
    "/{node_id}",
    status_code=204,
    response_class=Response,
    responses=WRITE_ERRORS,
    dependencies=[Depends(require_token)],
)
async def deregister(node_id: str, checker: CheckerDep) -> Response:
    """Remove a node at once; idempotent, so a manager may call it again after our restart."""
    checker.registry.remove(node_id)
    return Response(status_code=204)


@nodes.get("", response_model=NodeList, responses=READ_ERRORS)
async def list_nodes(checker: CheckerDep, model: Model = None, version: Version = None) -> NodeList:
    _check_filter(model, version)
    return checker.registry.listing(model, version)


@nodes.get("/watch", response_model=NodeList, responses=READ_ERRORS)
async def watch(
    checker: CheckerDep,
    since: Annotated[int | None, Query(description="The version the caller has.")] = None,
    timeout_s: Annotated[float | None, Query(ge=0, description="Capped by watch_timeout_s.")] = None,
    model: Model = None,
    version: Version = None,
) -> NodeList:
    """Long-poll: answer once the version differs from `since`, or at the timeout regardless."""
    _check_filter(model, version)
    return await checker.watch(since, timeout_s, model, version)


@ops.get("/healthz", response_model=HealthCheckerHealthz)
async def healthz() -> HealthCheckerHealthz:
    return HealthCheckerHealthz(status="ok")


@ops.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(checker: CheckerDep) -> Response:
    body, content_type = checker.metrics.render(checker.registry)
    return Response(body, media_type=content_type)


def _check_filter(model: str | None, version: str | None) -> None:
    if version is not None and model is None:
        raise InvalidNodeRequest("`version` filters a `model`: give both")
