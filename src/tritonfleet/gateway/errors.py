"""Errors the gateway answers itself, in Triton's `{"error": ...}` shape."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class GatewayError(Exception):
    """An answer the gateway gives without a node's.

    GatewayError (500)
    ├── BadRequest (400)        malformed URL or body
    ├── BodyTooLarge (413)      body over gateway.max_body_bytes
    ├── AlreadyCharged (409)    a paid request reused a request id that was charged before
    ├── Unavailable (503)       no node could serve the request now; comes with Retry-After
    └── DeadlineExceeded (504)  the request's deadline ran out
    Scheduler errors (UnknownModel 404, NoNodeAvailable 503) are answered the same way.
    """

    status = 500


class BadRequest(GatewayError):
    status = 400


class BodyTooLarge(GatewayError):
    status = 413


class AlreadyCharged(GatewayError):
    status = 409


class Unavailable(GatewayError):
    status = 503


class DeadlineExceeded(GatewayError):
    status = 504


def error_response(
    status: int, message: str, request_id: str | None = None, retry_after_s: int = 1
) -> web.Response:
    headers = {"X-Request-ID": request_id} if request_id else {}
    if status == 503:
        headers["Retry-After"] = str(retry_after_s)
    return json_response({"error": message}, status=status, headers=headers)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON as Triton writes it: compact, no spaces."""
    return web.json_response(data, status=status, headers=headers, dumps=_compact)


def _compact(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))
