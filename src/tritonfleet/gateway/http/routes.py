"""The gateway's HTTP routes: Triton's KServe v2 protocol, answered for the whole cluster."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tritonfleet.cluster_auth import presents_token
from tritonfleet.gateway import access_log
from tritonfleet.gateway.errors import BodyTimeout, BodyTooLarge, GatewayError, MalformedRequest, Unavailable
from tritonfleet.gateway.http import cluster, unrouted
from tritonfleet.gateway.http.forwarding import HttpForwarder
from tritonfleet.gateway.http.model_control import ModelControlRoutes
from tritonfleet.gateway.http.responses import (
    CHARGE_HEADER,
    CREDIT_HEADER,
    error_response,
    json_response,
    refusal,
)
from tritonfleet.gateway.paid import PaidPath
from tritonfleet.gateway.request_ids import checked_request_id, new_request_id
from tritonfleet.gateway.service import GatewayCore
from tritonfleet.metrics import render
from tritonfleet.protocol import NodeView
from tritonfleet.proxy import Reply, UpstreamError, end_to_end, rest_of
from tritonfleet.scheduler.errors import SchedulerError, UnknownModel

log = logging.getLogger(__name__)

NODE_HEADER = "X-Tritonfleet-Node"
# The routes of an inference, charged when payments are on.
PAID_ROUTES = frozenset({"infer", "generate", "generate_stream"})
# Triton 2.51 answers 500 to a body it cannot parse; the client's mistake deserves a 400.
_UNPARSEABLE_BODY = b'{"error":"failed to parse the request JSON buffer'


DataPlaneStatus = Callable[[], Awaitable[dict[str, Any]]]


def build_app(core: GatewayCore, envoy_status: DataPlaneStatus | None = None) -> web.Application:
    """`envoy_status`: Envoy's state, with the Envoy data plane in front of this app."""
    app = web.Application(client_max_size=core.config.max_body_bytes, middlewares=[unrouted.triton_errors])
    app.router.add_routes(HttpRoutes(core, envoy_status).routes())
    app.router.add_routes(unrouted.routes())
    return app


class HttpRoutes:
    """Handlers for every route, over the state the two fronts share."""

    def __init__(self, core: GatewayCore, envoy_status: DataPlaneStatus | None = None) -> None:
        self.core = core
        self.envoy_status = envoy_status
        self.config = core.config
        self.metrics = core.metrics
        self.forwarder = HttpForwarder(core.routing, core.session)
        self.access_log = access_log.Sampler(core.config)
        self.model_control = ModelControlRoutes(core)

    def routes(self) -> list[web.AbstractRouteDef]:
        model_routes = []
        for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            model_routes += [
                web.post(prefix + "/infer", self.infer),
                web.post(prefix + "/generate", self.generate),
                web.post(prefix + "/generate_stream", self.generate_stream),
                web.get(prefix, self.model_scoped),
                web.get(prefix + "/ready", self.model_ready),
                web.get(prefix + "/config", self.model_scoped),
                web.get(prefix + "/stats", self.model_stats),
            ]
        control = self.model_control
        for prefix in ("/v2/repository/models/{model}", "/v2/repository/{repository}/models/{model}"):
            model_routes += [
                web.post(prefix + "/load", control.load),
                web.post(prefix + "/unload", control.unload),
            ]
        return [
            web.get("/v2/health/live", self.live),
            web.get("/v2/health/ready", self.ready),
            web.get("/v2", self.server_metadata),
            web.get("/v2/models/stats", self.model_stats),
            web.post("/v2/repository/index", self.repository_index),
            web.post("/v2/repository/{repository}/index", self.repository_index),
            *model_routes,
            web.get("/v1/nodes", self.nodes),
            web.get("/v1/credit", self.credit),
            web.get("/metrics", self.prometheus),
            web.get("/healthz", self.live),
        ]

    async def infer(self, request: web.Request) -> web.StreamResponse:
        return await self._routed(request, "infer")

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._routed(request, "generate")

    async def generate_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._routed(request, "generate_stream")

    async def model_scoped(self, request: web.Request) -> web.StreamResponse:
        return await self._routed(request, "model")

    async def model_ready(self, request: web.Request) -> web.StreamResponse:
        response = await self._routed(request, "ready")
        if response.status in (404, 503):
            # Triton answers a readiness question about a model it can't serve with 400.
            return error_response(400, "Model version not ready", response.headers.get("X-Request-ID"))
        return response

    async def _routed(self, request: web.Request, route: str) -> web.StreamResponse:
        started = time.monotonic()
        chosen = request.headers.get("X-Request-ID")
        request_id = new_request_id()
        model = request.match_info["model"]
        version = request.match_info.get("version")
        self.metrics.in_flight.inc()
        try:
            if chosen:
                request_id = checked_request_id(chosen)
            paid = self.core.paid
            if paid is not None and route in PAID_ROUTES:
                response = await self._serve_paid(
                    paid, request, request_id, bool(chosen), route, model, version, started
                )
            else:
                response = await self._serve(request, request_id, model, version, started)
        except (GatewayError, SchedulerError) as exc:
            response = refusal(exc, request_id, self.config.retry_after_s)
        finally:
            self.metrics.in_flight.dec()
        duration_s = time.monotonic() - started
        self.metrics.observe(route, response.status, duration_s)
        if self.access_log.wanted():
            line = {
                "request_id": request_id,
                "route": route,
                "model": model,
                "version": version,
                "status": response.status,
                "node": response.headers.get(NODE_HEADER),
                "duration_ms": round(duration_s * 1000, 3),
            }
            # Logged on the loop's next turn, after aiohttp has written the answer: the client need
            # not wait for the line's CPU (docs/benchmarks.md, "Measurements behind the code").
            asyncio.get_running_loop().call_soon(access_log.write, line)
        return response

    async def _serve_paid(
        self,
        paid: PaidPath,
        request: web.Request,
        request_id: str,
        request_id_from_client: bool,
        route: str,
        model: str,
        version: str | None,
        started: float,
    ) -> web.StreamResponse:
        """A 200 is charged before any of it goes out: an answer once read whole (only an answer
        that has arrived is charged); a stream of events once its first chunk has come, as a
        paid gRPC stream's request is charged before its first output is relayed."""
        payer = paid.authenticate(request.headers.get("Authorization"))
        async with paid.hold(payer, request_id, model, version, request_id_from_client) as held:

            async def charge(headers: CIMultiDict[str]) -> None:
                charged = await held.charge()
                headers[CHARGE_HEADER] = str(charged.amount)
                headers[CREDIT_HEADER] = str(charged.remaining)

            return await self._serve(
                request,
                request_id,
                model,
                version,
                started,
                paid_by=charge,
                relay=route == "generate_stream",
            )

    async def credit(self, request: web.Request) -> web.Response:
        """The caller's lease on this gateway: granted, charged, held by requests in flight, free."""
        if self.core.paid is None:
            return error_response(404, "payments are not enabled on this gateway")
        try:
            payer = self.core.paid.authenticate(request.headers.get("Authorization"))
        except GatewayError as exc:
            return refusal(exc, None, self.config.retry_after_s)
        return json_response(self.core.paid.credit(payer.account))

    async def _serve(
        self,
        request: web.Request,
        request_id: str,
        model: str,
        version: str | None,
        started: float,
        paid_by: Callable[[CIMultiDict[str]], Awaitable[None]] | None = None,
        relay: bool = True,
    ) -> web.StreamResponse:
        """The node's answer; a long or open-ended one (with `relay`) relayed as it comes. With
        `paid_by`, a 200 is charged (its headers given what it cost) before any of it goes out."""
        if version is not None and not version.isdigit():
            raise MalformedRequest(f"invalid version '{version}' for model '{model}': expected a number")
        try:
            # Within the request's own deadline: a client trickling its body holds nothing longer.
            async with asyncio.timeout(started + self.config.request_timeout_s - time.monotonic()):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise BodyTooLarge(f"request body exceeds {self.config.max_body_bytes} bytes") from exc
        except TimeoutError as exc:
            raise BodyTimeout(
                f"request body not received within {self.config.request_timeout_s:g} s"
            ) from exc
        headers = end_to_end(request.headers)
        # aiohttp has decoded a compressed body: the node gets it as it now is.
        headers.popall("Content-Encoding", None)
        headers["X-Request-ID"] = request_id
        if paid_by is not None:
            headers.popall("Authorization", None)  # the user's API key is ours, not the nodes'

        served = await self.forwarder.forward(
            model,
            version,
            request.method,
            request.raw_path,
            body,
            headers,
            started + self.config.request_timeout_s,
            relay_idle_s=self.config.request_timeout_s if relay else None,
        )
        reply = served.reply
        out = reply.headers
        out["X-Request-ID"] = request_id
        out[NODE_HEADER] = served.node_id
        status = reply.status
        if status == 500 and reply.body.startswith(_UNPARSEABLE_BODY):
            status = 400
        if reply.pending is None:
            if paid_by is not None and status == 200:
                await paid_by(out)
            return web.Response(status=status, body=reply.body, headers=out)
        return await self._relay(request, reply, out, paid_by)

    async def _relay(
        self,
        request: web.Request,
        reply: Reply,
        headers: CIMultiDict[str],
        paid_by: Callable[[CIMultiDict[str]], Awaitable[None]] | None,
    ) -> web.StreamResponse:
        """A 200 whose body is still coming, relayed chunk by chunk (a paid one charged on its
        first). A node that breaks off mid-answer leaves the client's connection closed without
        the answer's end (aiohttp closes it when the handler raises once the head is out), so
        that the client sees the answer cut, never a short one as whole; such a request is
        missing from the access log and the latency metrics."""
        node = headers[NODE_HEADER]
        chunks = rest_of(reply)
        try:
            try:
                first = await anext(chunks, b"")
            except UpstreamError as exc:
                raise Unavailable(f"node {node} broke off before its answer: {exc}") from exc
            if paid_by is not None:
                await paid_by(headers)
            response = web.StreamResponse(status=reply.status, headers=headers)
            await response.prepare(request)
            try:
                await response.write(first)
                async for chunk in chunks:
                    await response.write(chunk)
            except UpstreamError as exc:
                log.warning("answer broke off", extra={"node": node, "error": str(exc)})
                raise ConnectionResetError(f"node {node}: {exc}") from exc
            await response.write_eof()
            return response
        finally:
            await chunks.aclose()

    async def live(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def ready(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.core.ready() else 400)

    async def server_metadata(self, request: web.Request) -> web.Response:
        """A node's own metadata: the cluster speaks the protocol version its nodes speak."""
        answers = await self._fan_out(self.core.schedulable()[:1], "GET", "/v2", b"")
        if not answers:
            return error_response(503, "no node is serving now", retry_after_s=self.config.retry_after_s)
        return json_response(answers[0])

    async def repository_index(self, request: web.Request) -> web.Response:
        try:
            wanted = json.loads(await request.read() or b"{}")
        except json.JSONDecodeError as exc:
            return error_response(400, f"failed to parse the request JSON buffer: {exc}")
        index = cluster.merge_index(
            await self._fan_out(self.core.schedulable(), "POST", "/v2/repository/index", b"{}")
        )
        if isinstance(wanted, dict) and wanted.get("ready"):
            index = [entry for entry in index if entry.get("state") == "READY"]
        return json_response(index)

    async def model_stats(self, request: web.Request) -> web.Response:
        model = request.match_info.get("model")
        version = request.match_info.get("version")
        nodes = [node for node in self.core.schedulable() if model is None or node.serves(model, version)]
        if model is not None and not nodes:
            return error_response(404, UnknownModel.of(model, version).message)
        answers = await self._fan_out(nodes, "GET", request.raw_path, b"")
        return json_response(cluster.merge_stats(answers))

    async def nodes(self, request: web.Request) -> web.Response:
        """The node view this gateway routes with, as its health checkers last told it. It holds
        the nodes' addresses, which clients must not learn: the cluster token is required."""
        if not presents_token(request.headers.get("Authorization"), self.core.cluster_token):
            return error_response(401, "the node list needs 'Authorization: Bearer <cluster token>'")
        watcher = self.core.watcher
        view: dict[str, Any] = {
            "nodes": [node.model_dump(mode="json") for node in watcher.nodes],
            # No health checker vouches for the view now: the nodes are the last known ones.
            "stale": watcher.stale,
        }
        if self.envoy_status is not None:
            view["envoy"] = await self.envoy_status()
        return json_response(view)

    async def prometheus(self, request: web.Request) -> web.Response:
        body, content_type = render(self.core.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _fan_out(self, nodes: list[NodeView], method: str, path: str, body: bytes) -> list[Any]:
        return await cluster.fan_out(
            self.core.session, nodes, method, path, body, self.config.fan_out_timeout_s, self.core.admin_key
        )
