"""Control-plane message bodies shared by the manager, health checker, scheduler and gateway.

These are the wire formats fixed in DESIGN.md; pydantic validates them at every boundary.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field


class ModelRef(BaseModel):
    """A model version that Triton reports READY."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    # A stateful model (its config has a `sequence_batching` section): every request of one
    # sequence must reach the same node (gateway/sequences.py). Read by the manager from the
    # model's config when the version becomes READY (node/observe.py).
    sequence: bool = False
    # When Triton forgets an idle sequence of it (`max_sequence_idle_microseconds`), seconds.
    sequence_idle_s: float = Field(default=0.0, ge=0)


class GpuDevice(BaseModel):
    """A GPU that the node's Triton may use, as `nvidia-smi` reports it when the manager starts
    (node/gpus.py), so that placement and dashboards can tell one machine from another."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0)
    # The model, as the driver names it ("NVIDIA H100 80GB HBM3").
    name: str = Field(max_length=200)
    memory_bytes: int = Field(ge=0)
    uuid: str = Field(default="", max_length=200)


class NodeState(StrEnum):
    """What the manager says of its own node."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


class Heartbeat(BaseModel):
    """Body of `POST /v1/nodes/register` and `POST /v1/nodes/{node_id}/heartbeat`."""

    node_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
    manager_url: str
    triton_http_url: str
    triton_grpc_url: str = ""
    triton_metrics_url: str = ""
    models: list[ModelRef] = []
    # Requests the manager is forwarding now (forwarding mode only).
    in_flight: int = Field(default=0, ge=0)
    # Triton's `nv_inference_pending_request_count`, summed over models.
    pending: int = Field(default=0, ge=0)
    capacity: int = Field(default=1, ge=1)
    state: NodeState = NodeState.STARTING
    # Empty on a machine without NVIDIA GPUs, or where nvidia-smi could not say.
    gpus: list[GpuDevice] = Field(default=[], max_length=256)


class RegisterResponse(BaseModel):
    """Answer of register (with the node's secret) and of heartbeats (without)."""

    # The header in which heartbeats and deregistration of the node present `node_secret`.
    SECRET_HEADER: ClassVar[str] = "X-Node-Secret"

    node_id: str
    heartbeat_interval_s: float
    ttl_s: float
    node_secret: str | None = Field(
        default=None, repr=False, description="The node's secret (register only): never log it."
    )


class NodeHealth(StrEnum):
    """What the health checker concludes from heartbeats and probes."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class NodeView(Heartbeat):
    """A registered node as the health checker serves it."""

    health: NodeHealth
    last_heartbeat_age_s: float
    probe_failures: int = 0

    @property
    def schedulable(self) -> bool:
        return self.health is NodeHealth.HEALTHY and self.state is NodeState.READY

    def serves(self, model: str, version: str | None) -> bool:
        return any(m.name == model and (version is None or m.version == version) for m in self.models)


class NodeList(BaseModel):
    """Body of `GET /v1/nodes` and of `GET /v1/nodes/watch`.

    `version` grows by one on every change to the registry, so a watcher asks for
    `since=<version it has>` and is answered as soon as there is something newer.
    """

    version: int
    nodes: list[NodeView]
    # Seconds until this list can be complete: a health checker that (re)started less than a
    # TTL ago may not have heard yet from every live node, so watchers keep the nodes they
    # knew meanwhile rather than take its list for the whole cluster.
    warming_s: float = 0.0


class ScheduleResponse(BaseModel):
    node_id: str
    url: str


class ErrorBody(BaseModel):
    """Triton's error shape, used by every service."""

    error: str
