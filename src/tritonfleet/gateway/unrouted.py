"""The parts of Triton's protocol that no node can answer for the cluster, answered by the
gateway itself on both fronts (http/unrouted.py, grpc/unrouted.py), in these words.

Shared memory is answered as a Triton answers with client shared memory off (its default since
`--allow-client-shm`): the status lists no region, and registering or unregistering one is
UNSUPPORTED (HTTP 501, gRPC UNIMPLEMENTED), here with the reason that holds for any gateway:
the client and the nodes are different machines. Trace and log settings belong to each node's
Triton, so reading or changing them through the gateway is UNSUPPORTED too: one status for all
that the gateway does not offer, as Triton has for what it does not offer over the network.
"""

from __future__ import annotations

SHARED_MEMORY = (
    "shared memory cannot be used through the gateway: the client and the node that serves a "
    "request are different machines, each request may go to another node; send the tensors in "
    "the request instead"
)
TRACE = (
    "trace settings are per node: each node's Triton keeps its own, which the gateway does not "
    "read or change for the cluster; change them on the node itself"
)
LOG = (
    "log settings are per node: each node's Triton keeps its own, which the gateway does not "
    "read or change for the cluster; change them on the node itself"
)


def region_not_found(kind: str, region: str) -> str:
    """Triton's words for the status of a region not registered, as none is here; `kind` is
    `system` or `cuda`."""
    return f"Unable to find {kind} shared memory region: '{region}'"
