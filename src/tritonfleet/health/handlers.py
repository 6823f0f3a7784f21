"""Every error leaves as `{"error": "..."}` (Triton's shape), never FastAPI's 422 details."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tritonfleet.health.auth import enforce_token, refused
from tritonfleet.health.errors import ClusterTokenRefused, HealthError, NodeClaimRefused
from tritonfleet.protocol import ErrorBody


def install(app: FastAPI) -> None:
    app.add_exception_handler(HealthError, _on_health_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_invalid)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _on_http_error)  # type: ignore[arg-type]


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(error=message).model_dump(), status_code=status, headers=headers)


async def _on_health_error(request: Request, exc: HealthError) -> JSONResponse:
    if isinstance(exc, NodeClaimRefused):
        refused(request, exc.reason, exc.node_id)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, ClusterTokenRefused) else None
    return _error(exc.status, str(exc), headers)


async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI rejects undecodable JSON or queries before any dependency runs; an unauthenticated
    # caller must still learn only "401", not how its request was wrong. Every route that takes
    # input is under /v1/nodes, so it needs the token.
    try:
        await enforce_token(request)
    except ClusterTokenRefused as denied:
        return await _on_health_error(request, denied)
    return _error(400, "invalid request: " + _describe(exc))


async def _on_http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    return _error(exc.status_code, str(exc.detail), exc.headers)


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
