"""The gateway: one KServe v2 entry point (HTTP and gRPC) in front of every Triton node.

    command.py    `tritonfleet gateway`: opens the core, serves both fronts, closes it all
    service.py    GatewayCore: what the fronts share, built once at start-up
    routing.py    which node to try, the attempt loop, ejection of failing nodes
    sequences.py  stateful models: a request's sequence id, the node of each live sequence
    paid.py       the paid path: API key → held price → one charge, or the hold released
    errors.py     the gateway's own answers, as HTTP statuses
    http/         the HTTP front: routes, forwarding, cluster-wide answers
    grpc/         the gRPC front: routes, forwarding, streams and their charges, wire format
    envoy/        the Envoy data plane: its process and configuration

docs/architecture.md traces one request through these.
"""

import os

# The gateway starts processes (Envoy, the charge writer) while its gRPC server runs. gRPC's
# fork support re-creates its pollers around every fork, and a poller a thread is waiting on
# then fails (`epoll_wait error: Bad file descriptor`) and aborts the gateway. Its children
# never use gRPC (they exec at once), so they need no fork support. Read when grpc is first
# imported: the gateway's modules import it after this.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
