"""The request id the gateway gives a request that came without one (HTTP `X-Request-ID`, gRPC
`x-request-id`); with payments on it is the charge's primary key in the ledger."""

from __future__ import annotations

import uuid_utils


def new_request_id() -> str:
    """A UUIDv7 in 32 hex digits: as unique and unguessable as a uuid4, but ordered by time.

    The ledger's primary key index then grows at its end: with random ids every charge writes
    a random leaf page, which costs more CPU per charge the larger the table grows
    (docs/benchmarks.md, "Measurements behind the code").
    """
    return uuid_utils.uuid7().hex
