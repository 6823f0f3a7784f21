"""Triton's HTTP routes that the gateway answers itself (gateway/unrouted.py says why), and
Triton's own answers to a route it does not know or a method a route does not take.

    GET  /v2/{system,cuda}sharedmemory[/region/{r}]/status         [], or 404 for a region
    POST /v2/{system,cuda}sharedmemory[/region/{r}]/(un)register   501, shared memory cannot cross machines
    GET|POST /v2/trace/setting, /v2/models/{m}/trace/setting       501, per node
    GET|POST /v2/logging                                           501, per node
    any other route                                                404 {"error":"Not Found"}
    a route with another method                                    405 {"error":"Method Not Allowed"}

Triton checks the method first, so a wrong one is 405 on these routes too.
"""

from __future__ import annotations

from functools import partial

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import MatchInfoError

from tritonfleet.gateway import unrouted
from tritonfleet.gateway.http.responses import error_response, json_response

# Triton's own words for a route it does not know, and a method a route does not take.
NOT_FOUND = "Not Found"
METHOD_NOT_ALLOWED = "Method Not Allowed"
# Triton's HTTP status for what it does not offer (TRITONSERVER_ERROR_UNSUPPORTED).
UNSUPPORTED = 501


def routes() -> list[web.AbstractRouteDef]:
    table: list[web.AbstractRouteDef] = []
    for kind, name in (("system", "systemsharedmemory"), ("cuda", "cudasharedmemory")):
        for prefix in (f"/v2/{name}", f"/v2/{name}/region/{{region}}"):
            table += [
                web.get(prefix + "/status", partial(_no_regions, kind), allow_head=False),
                web.post(prefix + "/register", _shared_memory),
                web.post(prefix + "/unregister", _shared_memory),
            ]
    for path, reason in (
        ("/v2/trace/setting", unrouted.TRACE),
        ("/v2/models/{model}/trace/setting", unrouted.TRACE),
        ("/v2/logging", unrouted.LOG),
    ):
        table += [
            web.get(path, partial(_per_node, reason), allow_head=False),
            web.post(path, partial(_per_node, reason)),
        ]
    return table


@web.middleware
async def triton_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The router's own 404 and 405 (aiohttp's are plain text), in Triton's words and shape."""
    matched = request.match_info
    if not isinstance(matched, MatchInfoError):
        return await handler(request)
    refused = matched.http_exception
    if refused.status == 405:
        response = error_response(405, METHOD_NOT_ALLOWED)
        response.headers["Allow"] = refused.headers.get("Allow", "")
        return response
    if refused.status == 404:
        return error_response(404, NOT_FOUND)
    return await handler(request)


async def _no_regions(kind: str, request: web.Request) -> web.Response:
    region = request.match_info.get("region")
    if region is not None:
        return error_response(404, unrouted.region_not_found(kind, region))
    return json_response([])


async def _shared_memory(request: web.Request) -> web.Response:
    return error_response(UNSUPPORTED, unrouted.SHARED_MEMORY)


async def _per_node(reason: str, request: web.Request) -> web.Response:
    return error_response(UNSUPPORTED, reason)
