"""The scheduler service's HTTP endpoints, errors in Triton's shape, and request metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from tritonfleet.cluster_auth import presents_token
from tritonfleet.config import NodeRoute
from tritonfleet.metrics import render
from tritonfleet.protocol import ErrorBody, NodeList, ScheduleResponse
from tritonfleet.scheduler.errors import ClusterTokenRequired, SchedulerError
from tritonfleet.scheduler.metrics import SchedulerMetrics
from tritonfleet.scheduler.service import ScheduleService

RETRY_AFTER_S = 1
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 503)
}


class SchedulerHealthz(BaseModel):
    status: str = "ok"
    nodes: int
    schedulable: int


def add_routes(app: FastAPI, service: ScheduleService) -> None:
    token = service.config.cluster.read_token()

    async def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        """Both `/v1` routes answer node addresses, which only the cluster may learn."""
        if not presents_token(authorization, token):
            raise ClusterTokenRequired("missing or wrong cluster token: send 'Authorization: Bearer <token>'")

    cluster_only = [Depends(require_token)]

    @app.get(
        "/v1/schedule", response_model=ScheduleResponse, responses=ERROR_RESPONSES, dependencies=cluster_only
    )
    async def schedule(
        model: Annotated[str, Query(min_length=1)],
        version: str | None = None,
        exclude: Annotated[str, Query(description="Comma-separated node ids to avoid")] = "",
        route: NodeRoute = NodeRoute.TRITON,
        affinity: Annotated[str | None, Query(description="A sequence's key: its node by rendezvous")] = None,
        pinned: Annotated[str | None, Query(description="A live sequence's node, if a candidate")] = None,
    ) -> ScheduleResponse:
        """A node that has the model (and version) READY and can take a request now."""
        excluded = [node_id for node_id in exclude.split(",") if node_id]
        return service.schedule(model, version or None, excluded, route, affinity, pinned)

    @app.get("/v1/nodes", response_model=NodeList, responses=ERROR_RESPONSES, dependencies=cluster_only)
    async def nodes() -> NodeList:
        """The scheduler's view: every health checker's list, merged."""
        return NodeList(version=service.version, nodes=service.scheduler.nodes)

    @app.get("/healthz", response_model=SchedulerHealthz)
    async def healthz() -> SchedulerHealthz:
        view = service.scheduler.nodes
        return SchedulerHealthz(nodes=len(view), schedulable=sum(node.schedulable for node in view))

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        body, content_type = render(service.metrics.registry)
        return Response(body, media_type=content_type)


def add_error_handlers(app: FastAPI, metrics: SchedulerMetrics) -> None:
    @app.exception_handler(SchedulerError)
    async def scheduler_error(request: Request, exc: SchedulerError) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 503 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.refused("bad_request")
        problems = [f"{err['loc'][0]} parameter '{err['loc'][-1]}': {err['msg']}" for err in exc.errors()]
        return JSONResponse({"error": "; ".join(problems)}, status_code=400)
