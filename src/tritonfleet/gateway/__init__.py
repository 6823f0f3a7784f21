"""The gateway: one KServe v2 entry point (HTTP and gRPC) in front of every Triton node.

    command.py    `tritonfleet gateway`: opens the core, serves both fronts, closes it all
    service.py    GatewayCore: what the fronts share, built once at start-up
    routing.py    which node to try, the attempt loop, ejection of failing nodes
    paid.py       the paid path: API key → held price → one charge, or the hold released
    errors.py     the gateway's own answers, as HTTP statuses
    http/         the HTTP front: routes, forwarding, cluster-wide answers
    grpc/         the gRPC front: routes, forwarding, streams and their charges, wire format

docs/architecture.md traces one request through these.
"""
