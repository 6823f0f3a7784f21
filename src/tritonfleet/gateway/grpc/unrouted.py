"""Triton's gRPC methods that the gateway answers itself (gateway/unrouted.py says why), in
the statuses a Triton with client shared memory off answers them:

    {System,Cuda}SharedMemoryStatus        no region, or NOT_FOUND for a named one
    {System,Cuda}SharedMemory(Un)register  UNIMPLEMENTED, shared memory cannot cross machines
    TraceSetting, LogSettings              UNIMPLEMENTED, per node
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeAlias

import grpc

from tritonfleet.gateway import unrouted
from tritonfleet.gateway.grpc.errors import GrpcAbort, Refusal
from tritonfleet.gateway.grpc.wire import LENGTH, WireError, fields

Unary: TypeAlias = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]

# {System,Cuda}SharedMemoryStatusRequest.name
REGION_NAME = 1


def handlers() -> dict[str, Unary]:
    """The methods, by name, for the service's generic handler."""
    unsupported = Refusal(grpc.StatusCode.UNIMPLEMENTED, unrouted.SHARED_MEMORY)
    answers: dict[str, Unary] = {
        "TraceSetting": partial(_refuse, Refusal(grpc.StatusCode.UNIMPLEMENTED, unrouted.TRACE)),
        "LogSettings": partial(_refuse, Refusal(grpc.StatusCode.UNIMPLEMENTED, unrouted.LOG)),
    }
    for kind, name in (("system", "System"), ("cuda", "Cuda")):
        answers[f"{name}SharedMemoryStatus"] = partial(_no_regions, kind)
        answers[f"{name}SharedMemoryRegister"] = partial(_refuse, unsupported)
        answers[f"{name}SharedMemoryUnregister"] = partial(_refuse, unsupported)
    return answers


async def _no_regions(kind: str, message: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """An empty status (no region is registered), or Triton's NOT_FOUND for a named region."""
    region = _region(message)
    if region:
        raise GrpcAbort(Refusal(grpc.StatusCode.NOT_FOUND, unrouted.region_not_found(kind, region)))
    return b""  # the status response with no region in it


def _region(message: bytes) -> str:
    """The status request's region name, "" for all of them."""
    name = b""
    for number, wire_type, start, end in fields(message):
        if number == REGION_NAME and wire_type == LENGTH:
            name = message[start:end]
    try:
        return name.decode()
    except UnicodeDecodeError as exc:
        raise WireError(f"the region name is not UTF-8: {exc}") from exc


async def _refuse(refused: Refusal, message: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise GrpcAbort(refused)
