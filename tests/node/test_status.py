"""NodeStatus reads models and pending requests apart: a Triton whose metrics port answers
later than its HTTP port (seen at start) still gets its models announced with READY."""

from __future__ import annotations

from typing import Any

from tritonfleet.node.endpoints import TritonUrls
from tritonfleet.node.errors import TritonQueryError
from tritonfleet.node.metrics import NodeMetrics
from tritonfleet.node.status import NodeStatus
from tritonfleet.protocol import ModelRef, NodeState

SIMPLE = [ModelRef(name="simple", version="1")]


class MetricsNotYetUp:
    async def models(self, http_url: str) -> list[ModelRef]:
        return SIMPLE

    async def pending(self, metrics_url: str) -> int:
        raise TritonQueryError(f"metrics of {metrics_url}: refused")


async def test_a_node_goes_ready_with_its_models_while_its_metrics_do_not_answer() -> None:
    changes: list[Any] = []
    status = NodeStatus(
        MetricsNotYetUp(),  # type: ignore[arg-type]
        lambda: TritonUrls("http://127.0.0.1:1", "", "http://127.0.0.1:2/metrics"),
        NodeMetrics(),
        lambda: changes.append(1),
    )
    await status.triton_up()
    assert (status.state, status.models, status.pending) == (NodeState.READY, SIMPLE, 0)
    assert changes
