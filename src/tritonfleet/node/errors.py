"""Errors of the node manager."""

from __future__ import annotations


class NodeError(Exception):
    """Root of the node manager's errors; `exit_code` is what `tritonfleet node` exits with.

    NodeError
    ├── TritonNotFound     no `tritonserver` binary or Python backend to run: fatal
    ├── TritonStartError   `tritonserver` exited or was not ready in time: retried with back-off
    └── TritonQueryError   Triton did not answer a repository or metrics query: logged, retried
    """

    exit_code = 1


class TritonNotFound(NodeError):
    exit_code = 3


class TritonStartError(NodeError):
    pass


class TritonQueryError(NodeError):
    pass
