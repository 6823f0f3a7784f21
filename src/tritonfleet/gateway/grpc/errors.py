"""The gRPC front's answers: the gateway's errors as the gRPC status of the same meaning, and
the statuses only gRPC has (a node's own, relayed; methods the gateway refuses)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from tritonfleet.gateway.errors import GatewayError
from tritonfleet.scheduler.errors import SchedulerError

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


@dataclass(frozen=True, slots=True)
class Refusal:
    """A status to end a call with, and metadata a script can act on."""

    code: grpc.StatusCode
    details: str
    trailing: tuple[tuple[str, str], ...] = ()


class GrpcAbort(GatewayError):
    """Ends the call with a gRPC status that has no HTTP twin, or one already rendered."""

    def __init__(self, refused: Refusal) -> None:
        super().__init__(refused.details)
        self.refused = refused


def refusal(exc: GatewayError | SchedulerError) -> Refusal:
    """The status a gRPC client gets for an error of the gateway's or the scheduler's."""
    if isinstance(exc, GrpcAbort):
        return exc.refused
    figures = exc.figures if isinstance(exc, GatewayError) else {}
    trailing = tuple(
        (f"x-tritonfleet-{name.replace('_', '-')}", str(value)) for name, value in figures.items()
    )
    return Refusal(_CODES.get(exc.status, grpc.StatusCode.INTERNAL), str(exc), trailing)
