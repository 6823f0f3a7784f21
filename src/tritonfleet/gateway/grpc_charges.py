"""Paid streams: each request of a stream is charged once, when the response completing it comes.

A request's price is held when it is sent on, as for a unary call. Triton marks the response
that completes a request (`triton_final_response`), but a decoupled model that ends with a
flag-only final sends nothing unless the request asked for empty final responses: the gateway
asks for them on every paid request and drops those the client did not ask for itself. The
completing response commits the charge before it is relayed; a failed request, or one still
unanswered when the stream ends, is released and costs nothing.

Responses are matched to requests by the id Triton echoes. A request whose own id is empty, or
already in flight on this stream, is sent with the charge id instead, and its responses are given
the client's id back.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from tritonfleet.gateway.grpc_errors import GrpcAbort, Refusal, no_credit, refusal
from tritonfleet.gateway.grpc_wire import (
    WireError,
    read_route,
    read_stream_answer,
    wants_empty_final,
    with_empty_final,
    with_id,
    with_response_id,
)
from tritonfleet.gateway.payments import PaidPath
from tritonfleet.payments.credit import Reservation
from tritonfleet.payments.errors import DuplicateReservation, InsufficientCredit
from tritonfleet.payments.money import Credit


@dataclass(frozen=True, slots=True)
class _InFlight:
    reservation: Reservation
    model: str
    version: str | None
    client_id: str
    client_wants_empty_final: bool


class StreamCharges:
    """The charges of one paid stream of one account."""

    def __init__(self, paid: PaidPath, account: str, charge_prefix: str) -> None:
        self.paid = paid
        self.account = account
        # Charge ids are `<prefix>.<n>`, n counting the stream's requests from 1.
        self.charge_prefix = charge_prefix
        self.charged = Credit(0)
        self.remaining: Credit | None = None
        self._sent = 0
        self._in_flight: dict[str, _InFlight] = {}

    def outgoing(self, request: bytes) -> bytes:
        """Hold the request's price; the bytes to send on. Raises GrpcAbort for a request that
        cannot be paid for: the stream then ends once those in flight are done."""
        try:
            route = read_route(request)
        except WireError as exc:
            raise GrpcAbort(Refusal(grpc.StatusCode.INVALID_ARGUMENT, str(exc))) from exc
        self._sent += 1
        charge_id = f"{self.charge_prefix}.{self._sent}"
        version = route.version or None
        try:
            reservation = self.paid.reserve(self.account, charge_id, route.model, version)
        except InsufficientCredit as exc:
            raise GrpcAbort(no_credit(exc, route.model, self.paid.top_up_hint)) from exc
        except DuplicateReservation as exc:
            raise GrpcAbort(refusal(exc)) from exc
        client_wants = wants_empty_final(request)
        tracking_id = route.request_id
        if not tracking_id or tracking_id in self._in_flight:
            tracking_id = charge_id
            request = with_id(request, charge_id)
        if not client_wants:
            request = with_empty_final(request)
        self._in_flight[tracking_id] = _InFlight(
            reservation, route.model, version, route.request_id, client_wants
        )
        return request

    async def incoming(self, response: bytes) -> bytes | None:
        """Charge or release what a response completes; the bytes to relay, None to drop."""
        answer = read_stream_answer(response)
        pending = self._in_flight.get(answer.request_id)
        if pending is None:
            return response
        if answer.completes:
            del self._in_flight[answer.request_id]
            await self._settle(pending, failed=answer.failed)
            if answer.final and not (answer.has_outputs or answer.failed or pending.client_wants_empty_final):
                return None
        if answer.request_id != pending.client_id:
            response = with_response_id(response, pending.client_id)
        return response

    def release_all(self) -> None:
        """Free what was held for requests the stream ended without completing."""
        for pending in self._in_flight.values():
            self.paid.book.release(pending.reservation)
        self._in_flight.clear()

    async def _settle(self, pending: _InFlight, failed: bool) -> None:
        if failed:
            self.paid.book.release(pending.reservation)
            return
        charged = await self.paid.charge(pending.reservation, pending.model, pending.version)
        self.charged = Credit(self.charged + charged.amount)
        self.remaining = charged.remaining
