"""The cluster token that every write to the registry must carry."""

from __future__ import annotations

import json
import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tritonfleet.health.errors import ClusterTokenRefused
from tritonfleet.health.service import Checker

log = logging.getLogger(__name__)

BEARER = HTTPBearer(auto_error=False, description="The cluster token shared by managers and health checkers.")


def checker_of(request: Request) -> Checker:
    checker = request.app.state.checker
    assert isinstance(checker, Checker)
    return checker


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
) -> None:
    """Dependency of every write: passes with `Authorization: Bearer <cluster token>`, else 401."""
    checker = checker_of(request)
    # BEARER answers None for a missing header or another scheme than Bearer.
    if credentials is not None and checker.accepts(credentials.credentials):
        return
    route = getattr(request.scope.get("route"), "path", "unmatched")
    checker.metrics.rejected.labels(route).inc()
    # Who knocked and for which node; never what they presented.
    client = f"{request.client.host}:{request.client.port}" if request.client else "unknown"
    node_id = await _claimed_node_id(request)
    log.warning("rejected a write without the cluster token", extra={"client": client, "node_id": node_id})
    raise ClusterTokenRefused("missing or wrong cluster token")


async def enforce_token(request: Request) -> None:
    """`require_token` outside dependency injection (for errors raised before dependencies run)."""
    await require_token(request, await BEARER(request))


async def _claimed_node_id(request: Request) -> str:
    if "node_id" in request.path_params:
        return str(request.path_params["node_id"])[:200]
    try:
        claimed = json.loads(await request.body()).get("node_id")
    except (ValueError, AttributeError, RuntimeError):
        return ""  # no readable body: the node id is unknown, the rejection is logged anyway
    return claimed[:200] if isinstance(claimed, str) else ""
