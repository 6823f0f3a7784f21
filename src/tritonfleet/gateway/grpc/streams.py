"""`ModelStreamInfer`: one client stream relayed to one node for its whole life.

Sequence and decoupled models keep state per stream on the node that serves it, so the stream
is pinned to the node chosen for its first request (for a stateful model, its sequence's node:
gateway/sequences.py), and every message goes there. Requests flow
up from a task of their own while responses flow down, each side as fast as its reader allows.
If the node dies the stream ends with UNAVAILABLE; a stream opened again lands on a healthy node.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import grpc
from tritonclient.grpc import service_pb2

from tritonfleet.gateway.errors import GatewayError, MalformedRequest
from tritonfleet.gateway.grpc.charges import StreamCharges
from tritonfleet.gateway.grpc.errors import GrpcAbort, Refusal, refusal
from tritonfleet.gateway.grpc.forwarding import GrpcForwarder, check_version, parse_route
from tritonfleet.gateway.grpc.metadata import CHARGE, CREDIT, NODE, REQUEST_ID, CallRecord, Incoming
from tritonfleet.gateway.paid import PaidPath
from tritonfleet.scheduler.errors import UnknownModel

log = logging.getLogger(__name__)


class StreamRelay:
    """Serves `ModelStreamInfer` calls: authenticate, pin to a node, relay, end with its status."""

    def __init__(self, forwarder: GrpcForwarder, paid: PaidPath | None) -> None:
        self.forwarder = forwarder
        self.paid = paid

    async def serve(
        self,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext,
        incoming: Incoming,
        record: CallRecord,
        deadline: float,
    ) -> AsyncIterator[bytes]:
        """The node's responses; raises GatewayError (GrpcAbort for a node's own status) to end
        the stream otherwise. The node is to be found and connected by `deadline`."""
        charges = self._charges(incoming)
        pinned, first, answered = None, b"", False
        async for first in requests:
            route = parse_route(first)
            record.model, record.version = route.model, route.version
            try:
                check_version(route)
                pinned = await self.forwarder.pin(route.model, route.version or None, deadline, first)
                break
            except (UnknownModel, MalformedRequest) as exc:
                # As Triton does: a request it cannot take is answered in the stream, which goes on.
                yield _stream_error(route.request_id, str(exc))
                answered = True
        if pinned is None:
            return
        record.node_id = pinned.node_id
        scheduler = self.forwarder.routing.scheduler
        scheduler.acquire(pinned.node_id)
        try:
            if not answered:  # else gRPC has sent the initial metadata with that first answer
                await context.send_initial_metadata(
                    ((NODE, pinned.node_id), (REQUEST_ID, incoming.request_id))
                )
            call = pinned.node.stream()(metadata=incoming.upstream, timeout=context.time_remaining())
            stream = PinnedStream(pinned.node_id, call, requests, charges)
            async for response in stream.relay(first):
                yield response
        finally:
            scheduler.release(pinned.node_id)
        self._end(context, stream, charges, pinned.stateful)

    def _charges(self, incoming: Incoming) -> StreamCharges | None:
        if self.paid is None:
            return None
        payer = self.paid.authenticate(incoming.authorization)
        # Unique to this stream even when the client reuses its x-request-id: a request id already
        # charged is never charged again, which would make a replayed stream free.
        return StreamCharges(self.paid, payer, f"{incoming.request_id}.{uuid.uuid4().hex[:12]}")

    def _end(
        self,
        context: grpc.aio.ServicerContext,
        stream: PinnedStream,
        charges: StreamCharges | None,
        stateful: bool = False,
    ) -> None:
        trailing: tuple[tuple[str, str], ...] = ()
        if charges is not None:
            trailing = ((CHARGE, str(charges.charged)),)
            if charges.remaining is not None:
                trailing += ((CREDIT, str(charges.remaining)),)
        outcome = stream.outcome
        if outcome.code is grpc.StatusCode.OK:
            context.set_trailing_metadata(trailing)
            return
        if outcome.code is grpc.StatusCode.UNAVAILABLE and stateful:
            # As a unary request of a lost sequence (sequences.SequenceLost): ABORTED.
            self.forwarder.routing.failed(stream.node_id)
            details = (
                f"node {stream.node_id} failed during the stream ({outcome.details}): the state of "
                "its sequences is lost; open a new stream and start the sequences again (sequence_start)"
            )
            outcome = Refusal(grpc.StatusCode.ABORTED, details, ((NODE, stream.node_id),))
        elif outcome.code is grpc.StatusCode.UNAVAILABLE:
            self.forwarder.routing.failed(stream.node_id)
            details = (
                f"node {stream.node_id} failed during the stream ({outcome.details}); "
                "open a new stream to continue on another node"
            )
            outcome = Refusal(outcome.code, details)
        raise GrpcAbort(Refusal(outcome.code, outcome.details, (*trailing, *outcome.trailing)))


class PinnedStream:
    """Relays a client's requests to a node's stream and its responses back.

    After `relay` has run, `outcome` is the status to end the client's stream with: the node's
    own, or the refusal of a request the gateway would not send on (the requests before it are
    still answered: the node's stream is half-closed, and ends once it has answered them all).
    """

    def __init__(
        self,
        node_id: str,
        call: grpc.aio.StreamStreamCall,
        requests: AsyncIterator[bytes],
        charges: StreamCharges | None,
    ) -> None:
        self.node_id = node_id
        self.call = call
        self.requests = requests
        self.charges = charges
        self.outcome = Refusal(grpc.StatusCode.OK, "")
        self._refused: Refusal | None = None

    async def relay(self, first: bytes) -> AsyncIterator[bytes]:
        pump = asyncio.create_task(self._pump(first), name=f"stream to {self.node_id}")
        try:
            async for response in self.call:
                if self.charges is not None:
                    response = await self.charges.incoming(response)
                    if response is None:
                        continue
                yield response
            self.outcome = Refusal(await self.call.code(), await self.call.details() or "")
        except grpc.aio.AioRpcError as exc:
            self.outcome = Refusal(exc.code(), exc.details() or "")
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            self.call.cancel()
            if self.charges is not None:
                self.charges.release_all()
        if self.outcome.code is grpc.StatusCode.OK and self._refused is not None:
            self.outcome = self._refused

    async def _pump(self, first: bytes) -> None:
        """Client to node, until the client is done or a request is refused; then half-close."""
        try:
            await self._send(first)
            async for request in self.requests:
                await self._send(request)
        except GatewayError as exc:
            self._refused = refusal(exc)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return  # the node's stream has ended; `relay` reads why
        except Exception:
            # Ends the node's stream, or `relay` would wait on it for ever.
            log.exception("relaying a stream's requests failed", extra={"node": self.node_id})
            self.call.cancel()
            return
        try:
            await self.call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return

    async def _send(self, request: bytes) -> None:
        if self.charges is not None:
            request = await self.charges.outgoing(request)
        await self.call.write(request)


def _stream_error(request_id: str, message: str) -> bytes:
    """An error answered in the stream, shaped as Triton's own."""
    error = service_pb2.ModelStreamInferResponse(error_message=message)
    error.infer_response.id = request_id
    return bytes(error.SerializeToString())
