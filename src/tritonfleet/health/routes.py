"""HTTP endpoints of the health checker.

Every `/v1/nodes` route needs the cluster token (401 without): the writes, and the reads too,
since node lists expose the nodes' addresses. A node's own heartbeats and deregistration also
need the secret its registration answered (`X-Node-Secret`, 403 without), so that one holder
of the token cannot refresh, remove or take over another node. `/healthz` and `/metrics` are
open.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel

from tritonfleet.health.auth import NodeSecret, checker_of, require_token
from tritonfleet.health.errors import InvalidNodeRequest
from tritonfleet.health.service import Checker
from tritonfleet.protocol import ErrorBody, Heartbeat, NodeList, RegisterResponse

CheckerDep = Annotated[Checker, Depends(checker_of)]
Model = Annotated[str | None, Query(min_length=1, description="Only nodes serving this model.")]
Version = Annotated[str | None, Query(min_length=1, description="With `model`: only this version.")]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody} for status in (400, 401, *statuses)}


nodes = APIRouter(prefix="/v1/nodes", tags=["nodes"], dependencies=[Depends(require_token)])
ops = APIRouter(tags=["operations"])


class HealthCheckerHealthz(BaseModel):
    status: str


@nodes.post("/register", response_model=RegisterResponse, responses=_errors(409))
async def register(body: Heartbeat, checker: CheckerDep, secret: NodeSecret = None) -> RegisterResponse:
    """Add a node and answer its secret; a live node's id only with that node's secret (409
    otherwise), which refreshes it and answers the same secret."""
    node_secret = checker.registry.register(body, secret)
    return checker.acknowledge(body.node_id, node_secret)


@nodes.post(
    "/{node_id}/heartbeat",
    response_model=RegisterResponse,
    response_model_exclude_none=True,
    responses=_errors(403, 404),
)
async def heartbeat(
    node_id: str, body: Heartbeat, checker: CheckerDep, secret: NodeSecret = None
) -> RegisterResponse:
    """Refresh a node. An unknown one is 404, not added: it must register (again) for a secret."""
    if body.node_id != node_id:
        raise InvalidNodeRequest(f"path node id {node_id!r} differs from body node_id {body.node_id!r}")
    checker.registry.heartbeat(body, secret)
    return checker.acknowledge(node_id)


@nodes.delete("/{node_id}", status_code=204, response_class=Response, responses=_errors(403))
async def deregister(node_id: str, checker: CheckerDep, secret: NodeSecret = None) -> Response:
    """Remove a node at once, with its secret; an unknown id is 204 too, so a manager may call
    it again after our restart."""
    checker.registry.remove(node_id, secret)
    return Response(status_code=204)


@nodes.get("", response_model=NodeList, responses=_errors())
async def list_nodes(checker: CheckerDep, model: Model = None, version: Version = None) -> NodeList:
    _check_filter(model, version)
    return checker.registry.listing(model, version)


@nodes.get("/watch", response_model=NodeList, responses=_errors())
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
