"""The request id the gateway gives a request that came without one (HTTP `X-Request-ID`, gRPC
`x-request-id`); with payments on it is the charge's primary key in the ledger."""

from __future__ import annotations

import uuid_utils

from tritonfleet.gateway.errors import MalformedRequest

MAX_REQUEST_ID_CHARS = 128
INVALID_REQUEST_ID = f"invalid request id: expected at most {MAX_REQUEST_ID_CHARS} printable ASCII characters"


def new_request_id() -> str:
    """A UUIDv7 in 32 hex digits: as unique and unguessable as a uuid4, but ordered by time.

    The ledger's primary key index then grows at its end: with random ids every charge writes
    a random leaf page, which costs more CPU per charge the larger the table grows
    (docs/benchmarks.md, "Measurements behind the code").
    """
    return uuid_utils.uuid7().hex


def checked_request_id(request_id: str) -> str:
    """The client's own request id, if it is one the ledger and the logs can hold: printable
    ASCII of at most 128 characters. Anything else is refused here, before it can fail the
    charges recorded with it."""
    if len(request_id) > MAX_REQUEST_ID_CHARS or not (request_id.isascii() and request_id.isprintable()):
        raise MalformedRequest(INVALID_REQUEST_ID)
    return request_id
