"""The HTTP front's own answers, in Triton's `{"error": ...}` shape."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tritonfleet.gateway.errors import GatewayError
from tritonfleet.scheduler.errors import SchedulerError

# What a paid answer cost, and the credit left on this gateway's lease.
CHARGE_HEADER = "X-Tritonfleet-Charge"
CREDIT_HEADER = "X-Tritonfleet-Credit-Remaining"


def refusal(exc: GatewayError | SchedulerError, request_id: str | None, retry_after_s: int) -> web.Response:
    """An error of the gateway's or the scheduler's, with its status and figures."""
    figures = exc.figures if isinstance(exc, GatewayError) else {}
    return error_response(exc.status, str(exc), request_id, retry_after_s, **figures)


def error_response(
    status: int, message: str, request_id: str | None = None, retry_after_s: int = 1, **figures: Any
) -> web.Response:
    headers = {"X-Request-ID": request_id} if request_id else {}
    if status == 503:
        headers["Retry-After"] = str(retry_after_s)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return json_response({"error": message, **figures}, status=status, headers=headers)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON as Triton writes it: compact, no spaces."""
    return web.json_response(data, status=status, headers=headers, dumps=_compact)


def _compact(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))
