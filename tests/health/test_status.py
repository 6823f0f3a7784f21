"""`tritonfleet status`: one row per node, its GPUs summed up by model and memory."""

from __future__ import annotations

from tritonfleet.health.status import COLUMNS, gpus, row
from tritonfleet.protocol import GpuDevice, NodeHealth, NodeView

GIB = 1 << 30


def test_gpus_are_grouped_by_model_and_memory() -> None:
    """Two H100s and an L4 read as two groups; a node without GPUs reads `-`."""
    devices = [
        GpuDevice(index=0, name="NVIDIA H100 80GB HBM3", memory_bytes=80 * GIB),
        GpuDevice(index=1, name="NVIDIA H100 80GB HBM3", memory_bytes=80 * GIB),
        GpuDevice(index=2, name="NVIDIA L4", memory_bytes=24 * GIB),
    ]
    assert gpus(devices) == "2x NVIDIA H100 80GB HBM3 (80 GiB), 1x NVIDIA L4 (24 GiB)"
    assert gpus([]) == "-"


def test_a_row_has_the_gpu_column() -> None:
    """The GPUS cell of a node's row is its summary."""
    node = NodeView(
        node_id="gpu-1",
        manager_url="http://10.0.0.11:8070",
        triton_http_url="http://10.0.0.11:8000",
        health=NodeHealth.HEALTHY,
        last_heartbeat_age_s=0.4,
        gpus=[GpuDevice(index=0, name="NVIDIA L4", memory_bytes=24 * GIB)],
    )
    assert dict(zip(COLUMNS, row(node), strict=True))["GPUS"] == "1x NVIDIA L4 (24 GiB)"
