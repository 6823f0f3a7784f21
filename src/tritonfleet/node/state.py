"""The node's own state (`starting|ready|draining`) and the one function that moves it."""

from __future__ import annotations

from enum import StrEnum

from tritonfleet.protocol import NodeState


class NodeEvent(StrEnum):
    TRITON_READY = "triton_ready"
    TRITON_DOWN = "triton_down"
    DRAIN = "drain"


def transition(state: NodeState, event: NodeEvent) -> NodeState:
    """Draining is final; before it, the node is ready exactly while its Triton is."""
    if state is NodeState.DRAINING or event is NodeEvent.DRAIN:
        return NodeState.DRAINING
    if event is NodeEvent.TRITON_READY:
        return NodeState.READY
    return NodeState.STARTING
