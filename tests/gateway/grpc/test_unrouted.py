"""Triton's gRPC methods that no node answers for the cluster, answered in the statuses and
words of the HTTP front: no shared-memory region, UNIMPLEMENTED for the rest."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from tritonclient.grpc import service_pb2

from tritonfleet.gateway import unrouted as reasons
from tritonfleet.gateway.errors import MalformedRequest
from tritonfleet.gateway.grpc.errors import GrpcAbort
from tritonfleet.gateway.grpc.unrouted import handlers

CONTEXT: Any = None  # the handlers read nothing of the call


async def refused(method: str, message: bytes = b"") -> GrpcAbort:
    with pytest.raises(GrpcAbort) as raised:
        await handlers()[method](message, CONTEXT)
    return raised.value


@pytest.mark.parametrize("kind", ["System", "Cuda"])
async def test_the_shared_memory_status_lists_no_region(kind: str) -> None:
    answer = await handlers()[f"{kind}SharedMemoryStatus"](b"", CONTEXT)
    status = getattr(service_pb2, f"{kind}SharedMemoryStatusResponse").FromString(answer)
    assert len(status.regions) == 0


async def test_a_named_region_is_not_found_in_tritons_words() -> None:
    request = service_pb2.CudaSharedMemoryStatusRequest(name="r0").SerializeToString()
    abort = await refused("CudaSharedMemoryStatus", request)
    assert abort.refused.code is grpc.StatusCode.NOT_FOUND
    assert abort.refused.details == "Unable to find cuda shared memory region: 'r0'"


async def test_a_status_request_that_is_no_message_is_malformed() -> None:
    with pytest.raises(MalformedRequest):
        await handlers()["SystemSharedMemoryStatus"](b"\x0a\x05ab", CONTEXT)


@pytest.mark.parametrize(
    ("method", "reason"),
    [
        ("SystemSharedMemoryRegister", reasons.SHARED_MEMORY),
        ("SystemSharedMemoryUnregister", reasons.SHARED_MEMORY),
        ("CudaSharedMemoryRegister", reasons.SHARED_MEMORY),
        ("CudaSharedMemoryUnregister", reasons.SHARED_MEMORY),
        ("TraceSetting", reasons.TRACE),
        ("LogSettings", reasons.LOG),
    ],
)
async def test_the_rest_is_unimplemented_saying_why(method: str, reason: str) -> None:
    abort = await refused(method)
    assert abort.refused.code is grpc.StatusCode.UNIMPLEMENTED and abort.refused.details == reason
