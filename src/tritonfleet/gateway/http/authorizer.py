"""Paid inference on Envoy's fast path: the Python gateway as Envoy's external authorizer.

With payments on and Envoy in front, a paid `infer` goes from Envoy straight to a node as an
unpaid one does, and the Python gateway only decides and charges, on a loopback port of its own
that clients never reach:

    POST /authorize/<path>   Envoy's ext_authz check, before any node is asked: the API key, the
                             request id, and the price held from the payer's credit (the paid
                             path's Hold); a refusal is the answer the client gets (401, 402,
                             409, 503), as from the Python gateway
    POST /commit             Envoy's Lua filter, in the response phase, with the node's status,
                             before the answer goes out: a 200 is durably charged (the answer
                             then carries its charge), anything else frees the hold; a charge
                             that fails withholds the answer (its refusal is the client's)

So no answer leaves without its durable charge, as on the Python path, which `bench.paid`
measures against this one. A hold whose commit never comes (the client went away before the
node answered, so Envoy had no response phase) is freed once no answer can come any more.
Each call carries a secret Envoy was configured with: no other process may charge or hold.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re

from aiohttp import web

from tritonfleet.gateway.errors import GatewayError
from tritonfleet.gateway.http.responses import CHARGE_HEADER, CREDIT_HEADER, error_response, refusal
from tritonfleet.gateway.paid import Hold, PaidPath
from tritonfleet.gateway.request_ids import checked_request_id, new_request_id
from tritonfleet.scheduler.errors import SchedulerError

log = logging.getLogger(__name__)

SECRET_HEADER = "x-tritonfleet-authorizer"
# An allowed request's hold (its request id), for the response phase; a refusal has none.
HOLD_HEADER = "x-tritonfleet-hold"
# The commit's: what the node answered.
STATUS_HEADER = "x-tritonfleet-status"
# The paid fast routes (envoy/resources.py): a stream of events is charged by the Python gateway.
_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/(?:infer|generate)")


class Authorizer:
    def __init__(self, paid: PaidPath, secret: str, retry_after_s: int, hold_s: float) -> None:
        """`hold_s`: how long a hold may wait for its commit (the request's deadline, and
        the charge's)."""
        self.paid = paid
        self.secret = secret
        self.retry_after_s = retry_after_s
        self.hold_s = hold_s
        self.holds: dict[str, Hold] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/authorize/{path:.*}", self.authorize)
        app.router.add_post("/commit", self.commit)
        return app

    async def authorize(self, request: web.Request) -> web.Response:
        if not self._from_envoy(request):
            return error_response(403, "not Envoy")
        route = _INFER.fullmatch("/" + request.match_info["path"].split("?", 1)[0])
        if route is None:
            return error_response(404, "only inference is authorized here")
        chosen = request.headers.get("X-Request-ID")
        request_id = new_request_id()
        try:
            if chosen:
                request_id = checked_request_id(chosen)
            payer = self.paid.authenticate(request.headers.get("Authorization"))
            held = self.paid.hold(payer, request_id, route[1], route[2], bool(chosen))
            await held.reserve()
        except (GatewayError, SchedulerError) as exc:
            return refusal(exc, request_id, self.retry_after_s)
        self.holds[request_id] = held
        asyncio.get_running_loop().call_later(self.hold_s, self._expire, request_id, held)
        # To the node with the request, and to the response phase as Envoy's metadata.
        return web.Response(headers={"X-Request-ID": request_id, HOLD_HEADER: request_id})

    async def commit(self, request: web.Request) -> web.Response:
        if not self._from_envoy(request):
            return error_response(403, "not Envoy")
        request_id = request.headers.get("X-Request-ID", "")
        held = self.holds.pop(request_id, None)
        if held is None:
            # Expired, or never held: the answer cannot be charged, so it is not given.
            return error_response(503, "the request's charge could not be recorded, try again", request_id)
        if request.headers.get(STATUS_HEADER) != "200":
            held.release()
            return web.Response()
        try:
            charged = await held.charge()
        except GatewayError as exc:
            return refusal(exc, request_id, self.retry_after_s)
        return web.Response(
            headers={CHARGE_HEADER: str(charged.amount), CREDIT_HEADER: str(charged.remaining)}
        )

    def _expire(self, request_id: str, held: Hold) -> None:
        if self.holds.get(request_id) is held:
            del self.holds[request_id]
            held.release()
            log.warning("a hold expired without its commit", extra={"request_id": request_id})

    def _from_envoy(self, request: web.Request) -> bool:
        return hmac.compare_digest(request.headers.get(SECRET_HEADER, ""), self.secret)
