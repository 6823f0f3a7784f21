"""The gateway's own answers as gRPC statuses: the HTTP status each error carries, mapped.

GatewayError, SchedulerError, Unauthorized and the payment errors carry the HTTP status they are
answered with; gRPC clients get the code that means the same thing, with the same message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import grpc

from tritonfleet.gateway.app import payment_required
from tritonfleet.payments.errors import InsufficientCredit

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    402: grpc.StatusCode.RESOURCE_EXHAUSTED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

SHARED_MEMORY = (
    "shared memory cannot be used through the gateway: the client and the node that serves a "
    "request are different machines, each request may go to another node; send the tensors in "
    "the request instead"
)
REPOSITORY = (
    "models are loaded per node, from each node's own repository: add or remove a model there "
    "(nodes poll their repository) or ask that node's Triton; the gateway routes to the nodes "
    "that report it READY"
)
TRACE = "trace settings belong to each node's Triton: change them on the node itself"
LOG = "log settings belong to each node's Triton: change them on the node itself"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A status the gateway answers itself, with metadata a script can act on."""

    code: grpc.StatusCode
    details: str
    trailing: tuple[tuple[str, str], ...] = ()


class GrpcAbort(Exception):
    """Ends the call with the gateway's own status (the gRPC side's root exception; the HTTP
    side's errors are turned into it by `refusal`)."""

    def __init__(self, refused: Refusal) -> None:
        super().__init__(refused.details)
        self.refused = refused


def code_for(http_status: int) -> grpc.StatusCode:
    return _CODES.get(http_status, grpc.StatusCode.INTERNAL)


def refusal(exc: Exception) -> Refusal:
    """An error carrying its HTTP status (`status`, or `status_code` for payments) as gRPC's."""
    status = getattr(exc, "status", getattr(exc, "status_code", 500))
    return Refusal(code_for(int(status)), str(exc))


def no_credit(exc: InsufficientCredit, model: str, top_up_hint: str) -> Refusal:
    """RESOURCE_EXHAUSTED worded as HTTP's 402, whose body is the source of the wording, with
    its figures as trailing metadata."""
    body = json.loads(payment_required(exc, model, "", top_up_hint).text or "{}")
    trailing = (
        ("x-tritonfleet-price", str(exc.price)),
        ("x-tritonfleet-available", str(exc.available)),
        ("x-tritonfleet-missing", str(exc.missing)),
    )
    return Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, body["error"], trailing)
