"""The two credentials of the registry: the cluster token that every `/v1/nodes` request must
carry, and the per-node secret that a node's own heartbeats and deregistration add to it."""

from __future__ import annotations

import json
import logging
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tritonfleet.health.errors import ClusterTokenRefused
from tritonfleet.health.service import Checker
from tritonfleet.protocol import RegisterResponse

log = logging.getLogger(__name__)

# What each reason of a refusal (its metric label) says in the log.
REFUSALS = {
    "cluster_token": "refused a request without the cluster token",
    "node_secret": "refused a node's heartbeat or deregistration without its secret",
    "node_id_taken": "refused to register a live node's id without its secret",
}

BEARER = HTTPBearer(auto_error=False, description="The cluster token shared by the cluster's services.")
NodeSecret = Annotated[
    str | None,
    Header(
        alias=RegisterResponse.SECRET_HEADER,
        description="The secret that registration answered to this node.",
    ),
]


def checker_of(request: Request) -> Checker:
    checker = request.app.state.checker
    assert isinstance(checker, Checker)
    return checker


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
) -> None:
    """Dependency of every `/v1/nodes` route: passes with `Authorization: Bearer <cluster token>`,
    else 401."""
    checker = checker_of(request)
    # BEARER answers None for a missing header or another scheme than Bearer.
    if credentials is not None and checker.accepts(credentials.credentials):
        return
    refused(request, "cluster_token", await _claimed_node_id(request))
    raise ClusterTokenRefused("missing or wrong cluster token")


async def enforce_token(request: Request) -> None:
    """`require_token` outside dependency injection (for errors raised before dependencies run)."""
    await require_token(request, await BEARER(request))


def refused(request: Request, reason: str, node_id: str) -> None:
    """Count and log a refused request: who knocked, for which node and why; never what it
    presented."""
    route = getattr(request.scope.get("route"), "path", "unmatched")
    checker_of(request).metrics.rejected.labels(route, reason).inc()
    client = f"{request.client.host}:{request.client.port}" if request.client else "unknown"
    log.warning(REFUSALS[reason], extra={"client": client, "node_id": node_id, "route": route})


async def _claimed_node_id(request: Request) -> str:
    if "node_id" in request.path_params:
        return str(request.path_params["node_id"])[:200]
    try:
        claimed = json.loads(await request.body()).get("node_id")
    except (ValueError, AttributeError, RuntimeError):
        return ""  # no readable body: the node id is unknown, the rejection is logged anyway
    return claimed[:200] if isinstance(claimed, str) else ""
