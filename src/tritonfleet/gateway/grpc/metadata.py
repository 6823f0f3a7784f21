"""What the gateway reads from a call's metadata, and what it passes on to the node."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc

from tritonfleet.gateway.request_ids import checked_request_id, new_request_id

REQUEST_ID = "x-request-id"
NODE = "x-tritonfleet-node"
CHARGE = "x-tritonfleet-charge"
CREDIT = "x-tritonfleet-credit-remaining"
AUTHORIZATION = "authorization"

# Set by gRPC itself on each hop, or ours: everything else (Triton's `triton_grpc_error`, headers
# a model reads through `--grpc-header-forward-pattern`) goes on to the node.
_NOT_FORWARDED = frozenset({AUTHORIZATION, REQUEST_ID, "user-agent", "te", "content-type"})


@dataclass(frozen=True, slots=True)
class Incoming:
    request_id: str
    # The client chose the request id (else the gateway made a new one).
    request_id_from_client: bool
    authorization: str | None
    # For the node: the client's own metadata, less the API key, plus the request id.
    upstream: tuple[tuple[str, str | bytes], ...]


def read_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Incoming:
    request_id, authorization = "", None
    forwarded: list[tuple[str, str | bytes]] = []
    for key, value in metadata or ():
        if key == REQUEST_ID and isinstance(value, str):
            request_id = value
        elif key == AUTHORIZATION and isinstance(value, str):
            authorization = value
        elif key not in _NOT_FORWARDED and not key.startswith((":", "grpc-")):
            forwarded.append((key, value))
    from_client = bool(request_id)
    request_id = checked_request_id(request_id) if from_client else new_request_id()
    forwarded.append((REQUEST_ID, request_id))
    return Incoming(request_id, from_client, authorization, tuple(forwarded))


@dataclass(slots=True)
class CallRecord:
    """What the access log and metrics say of one call, filled in as it is served."""

    method: str
    request_id: str
    code: grpc.StatusCode = grpc.StatusCode.OK
    model: str | None = None
    version: str | None = None
    node_id: str | None = None
