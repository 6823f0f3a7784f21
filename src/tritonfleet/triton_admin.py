"""The key that unlocks Triton's admin APIs, so that reaching a node's port is not enough.

Each `tritonserver` a manager starts restricts the APIs that change a node or read its memory
(model repository, shared memory, trace, logging) to requests carrying ADMIN_HEADER
(`--http-restricted-api`, `--grpc-restricted-protocol`). Inference, metadata, health, model
configuration and statistics stay open: they are what the gateway forwards.

The key is derived from the cluster token rather than drawn per node, because the gateway needs
it too: its repository index asks every node's Triton. Whoever holds the cluster token is a
member of the cluster already; whoever does not cannot load, unload or read shared memory even
with the node's address.
"""

from __future__ import annotations

import hashlib
import hmac

# Lower case: gRPC metadata keys must be.
ADMIN_HEADER = "tritonfleet-admin-key"
# Triton's gRPC front looks for the restricted protocols' header under this prefix.
GRPC_ADMIN_METADATA = f"triton-grpc-protocol-{ADMIN_HEADER}"
RESTRICTED_APIS = ("model-repository", "shared-memory", "trace", "logging")
_PURPOSE = b"tritonfleet: triton admin key"


def admin_key(cluster_token: str) -> str:
    return hmac.new(cluster_token.encode(), _PURPOSE, hashlib.sha256).hexdigest()


def restricted_args(key: str) -> list[str]:
    """`tritonserver` flags that put RESTRICTED_APIS behind ADMIN_HEADER: key."""
    spec = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={key}"
    return [f"--http-restricted-api={spec}", f"--grpc-restricted-protocol={spec}"]
