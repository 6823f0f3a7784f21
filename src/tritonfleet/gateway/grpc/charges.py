"""Paid streams: each request of a stream is charged once, before its first output is relayed.

A request's price is held (`PaidPath.hold`) when it is sent on, as for a unary call, once its
API key is found still valid: a key revoked while its stream is open ends the stream there. The first
response that answers it without an error charges it before that response is relayed, so a
client that reads outputs has paid for them, however the stream ends afterwards. A request
whose first response is an error, or that is still unanswered when the stream ends, is
released and costs nothing.

Triton marks the response that completes a request (`triton_final_response`), but a decoupled
model that ends with a flag-only final sends nothing unless the request asked for empty final
responses: the gateway asks for them on every paid request, to know when a request is done, and
drops those the client did not ask for itself.

Responses are matched to requests by the id Triton echoes. A request whose own id is empty, or
already in flight on this stream, is sent with the charge id instead, and its responses are given
the client's id back.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonfleet.gateway.grpc.forwarding import parse_route
from tritonfleet.gateway.grpc.wire import (
    read_stream_answer,
    wants_empty_final,
    with_empty_final,
    with_id,
    with_response_id,
)
from tritonfleet.gateway.paid import Hold, PaidPath, Payer
from tritonfleet.payments.money import Credit


@dataclass(frozen=True, slots=True)
class _InFlight:
    held: Hold
    client_id: str
    client_wants_empty_final: bool


class StreamCharges:
    """The charges of one paid stream of one payer."""

    def __init__(self, paid: PaidPath, payer: Payer, charge_prefix: str) -> None:
        self.paid = paid
        self.payer = payer
        # Charge ids are `<prefix>.<n>`, n counting the stream's requests from 1.
        self.charge_prefix = charge_prefix
        self.charged = Credit(0)
        self.remaining: Credit | None = None
        self._sent = 0
        self._in_flight: dict[str, _InFlight] = {}

    async def outgoing(self, request: bytes) -> bytes:
        """Hold the request's price; the bytes to send on. Raises the paid path's refusals (and
        MalformedRequest), a revoked key's among them: the stream then ends once the requests
        in flight are done."""
        self.paid.check_key(self.payer)
        route = parse_route(request)
        self._sent += 1
        charge_id = f"{self.charge_prefix}.{self._sent}"
        held = self.paid.hold(self.payer, charge_id, route.model, route.version or None)
        await held.reserve()
        client_wants = wants_empty_final(request)
        tracking_id = route.request_id
        if not tracking_id or tracking_id in self._in_flight:
            tracking_id = charge_id
            request = with_id(request, charge_id)
        if not client_wants:
            request = with_empty_final(request)
        self._in_flight[tracking_id] = _InFlight(held, route.request_id, client_wants)
        return request

    async def incoming(self, response: bytes) -> bytes | None:
        """Charge or release the request a response answers; the bytes to relay, None to drop."""
        answer = read_stream_answer(response)
        pending = self._in_flight.get(answer.request_id)
        if pending is None:
            return response
        if answer.failed:
            pending.held.release()
        elif pending.held.charged is None:
            charged = await pending.held.charge()
            self.charged = Credit(self.charged + charged.amount)
            self.remaining = charged.remaining
        if answer.completes:
            del self._in_flight[answer.request_id]
            if answer.final and not (answer.has_outputs or answer.failed or pending.client_wants_empty_final):
                return None
        if answer.request_id != pending.client_id:
            response = with_response_id(response, pending.client_id)
        return response

    def release_all(self) -> None:
        """Free what was held for requests the stream ended without answering."""
        for pending in self._in_flight.values():
            pending.held.release()
        self._in_flight.clear()
