"""TritonFleet: one KServe v2 entry point in front of many Triton Inference Servers."""

import os

# Before anything imports grpc. Its fork support restarts gRPC's poller in a forked child, which
# then dies before exec once subprocess has closed the child's file descriptors ("epoll_wait
# error: Bad file descriptor", grpc/grpc#43055): a gateway's Envoy, or a service a test starts,
# never ran. Every process here forks only to exec, which needs none of it: off, unless the
# environment says otherwise.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"
