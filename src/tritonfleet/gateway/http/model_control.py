"""`POST /v2/repository/models/{m}/load` and `/unload` for the whole cluster, over HTTP: the
flow is gateway/model_control.py; here are its calls to each node's Triton, and the answers
rendered as Triton's."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from tritonfleet.gateway.errors import BodyTooLarge, GatewayError
from tritonfleet.gateway.http.responses import error_response, refusal
from tritonfleet.gateway.model_control import Action, ModelControl, NodeAnswer
from tritonfleet.gateway.service import GatewayCore
from tritonfleet.protocol import NodeView
from tritonfleet.proxy import UpstreamError, UpstreamTimeout, exchange
from tritonfleet.triton_admin import ADMIN_HEADER

log = logging.getLogger(__name__)

INDEX = "/v2/repository/index"
# A node that gives no answer: it could not be asked, or did not answer in time.
UNREACHABLE, TIMED_OUT = 503, 504


class HttpNodeControl:
    """One load or unload, sent as the client wrote it to each node's Triton with the admin key
    (tritonfleet.triton_admin); the client's own headers, its credential first, stay here."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        admin_key: str,
        path: str,
        body: bytes,
        index_timeout_s: float,
        timeout_s: float,
    ) -> None:
        self.session = session
        self.headers: CIMultiDict[str] = CIMultiDict(
            {"Content-Type": "application/json", ADMIN_HEADER: admin_key}
        )
        self.path = path
        self.body = body
        self.index_timeout_s = index_timeout_s
        self.timeout_s = timeout_s

    async def holdings(self, node: NodeView) -> Collection[str] | None:
        try:
            reply = await exchange(
                self.session, "POST", node.triton_http_url + INDEX, b"{}", self.headers, self.index_timeout_s
            )
            if reply.status != 200:
                raise ValueError(f"status {reply.status}: {reply.body[:200]!r}")
            return {entry["name"] for entry in json.loads(reply.body)}
        except (UpstreamError, ValueError, TypeError, KeyError) as exc:
            log.warning("repository index unread", extra={"node": node.node_id, "error": str(exc)})
            return None

    async def apply(self, node: NodeView) -> NodeAnswer[int]:
        url = node.triton_http_url + self.path
        try:
            reply = await exchange(self.session, "POST", url, self.body, self.headers, self.timeout_s)
        except UpstreamError as exc:
            log.warning("model control: no answer", extra={"node": node.node_id, "error": str(exc)})
            if isinstance(exc, UpstreamTimeout):
                why = f"no answer within {self.timeout_s:g} s"
                return NodeAnswer(node.node_id, False, TIMED_OUT, why, answered=False)
            return NodeAnswer(node.node_id, False, UNREACHABLE, "could not be reached", answered=False)
        if reply.status == 200:
            return NodeAnswer(node.node_id, True, 200)
        return NodeAnswer(node.node_id, False, reply.status, triton_error(reply.body))


def triton_error(body: bytes) -> str:
    """The message of Triton's `{"error": "..."}`, or the body as text."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, TypeError, KeyError):
        return body.decode(errors="replace")
    return str(error)


class ModelControlRoutes:
    """The handlers of the two routes."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self.flow = ModelControl(core.watcher, core.cluster_token, core.config.fan_out_timeout_s)

    async def load(self, request: web.Request) -> web.Response:
        return await self._serve(Action.LOAD, request)

    async def unload(self, request: web.Request) -> web.Response:
        return await self._serve(Action.UNLOAD, request)

    async def _serve(self, action: Action, request: web.Request) -> web.Response:
        config = self.core.config
        model = request.match_info["model"]
        authorization = request.headers.get("Authorization")
        try:
            self.flow.authorize(authorization)  # before the body is read: it is the operator's
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge as exc:
                raise BodyTooLarge(f"request body exceeds {config.max_body_bytes} bytes") from exc
            # As the client wrote it, a repository name included (Triton answers for that).
            control = HttpNodeControl(
                self.core.session,
                self.core.admin_key,
                request.rel_url.raw_path,
                body,
                config.fan_out_timeout_s,
                config.request_timeout_s,
            )
            outcome = await self.flow.apply(authorization, action, model, self.core.schedulable(), control)
        except GatewayError as exc:
            return refusal(exc, None, config.retry_after_s)
        if outcome.ok:
            # Triton's success: 200, an empty body.
            return web.Response(status=200, content_type="application/json")
        relayed = outcome.relayed()
        if relayed is not None:
            return error_response(relayed.code, relayed.error)
        return error_response(outcome.code(500), outcome.message(), failed_nodes=outcome.failed_nodes)
