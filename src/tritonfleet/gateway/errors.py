"""Errors the gateway answers itself. Each carries the HTTP status it means; each front renders
it: HTTP as Triton's `{"error": ...}` (`http/responses.py`), gRPC as the status code of the same
meaning (`grpc/errors.py`).

GatewayError (500)
├── MalformedRequest (400)    malformed URL, body or message
│   └── WireError (400)       bytes that are no protobuf message (grpc/wire.py)
├── ApiKeyRefused (401)       no API key, or an unknown or revoked one (payments on)
├── PaymentRequired (402)     the caller's credit is below the price; carries the figures
├── AlreadyCharged (409)      a paid request reused a request id that was charged before
├── RequestIdInFlight (409)   a paid request reused the id of one still being served
├── BodyTimeout (408)         body not received within the request's deadline
├── BodyTooLarge (413)        body over gateway.max_body_bytes
├── Unavailable (503)         no node could serve the request now; comes with Retry-After
├── DeadlineExceeded (504)    the request's deadline ran out
├── NodeFailed (503)          a node gave no answer; routing tries another (routing.py)
├── GrpcBindError (500)       the gRPC port could not be bound
├── EnvoyNotFound (500)       no Envoy binary for the Envoy data plane (envoy/binary.py)
├── EnvoyStartError (500)     Envoy did not start, or refused its configuration
└── GrpcAbort                 a gRPC status with no HTTP twin (grpc/errors.py)
Scheduler errors (UnknownModel 404, NoNodeAvailable 503) are answered the same way.
"""

from __future__ import annotations

from collections.abc import Mapping


class GatewayError(Exception):
    status = 500
    # What a script can act on, beside the message: JSON fields over HTTP, trailing metadata
    # (`x-tritonfleet-<name>`) over gRPC.
    figures: Mapping[str, int | str] = {}


class MalformedRequest(GatewayError):
    status = 400


class ApiKeyRefused(GatewayError):
    status = 401


class PaymentRequired(GatewayError):
    status = 402


class AlreadyCharged(GatewayError):
    status = 409


class RequestIdInFlight(GatewayError):
    status = 409


class BodyTimeout(GatewayError):
    status = 408


class BodyTooLarge(GatewayError):
    status = 413


class Unavailable(GatewayError):
    status = 503


class DeadlineExceeded(GatewayError):
    status = 504


class GrpcBindError(GatewayError):
    """The gRPC port could not be bound (in use, or not allowed)."""


class EnvoyNotFound(GatewayError):
    pass


class EnvoyStartError(GatewayError):
    pass
