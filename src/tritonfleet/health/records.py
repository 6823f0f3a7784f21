"""What the registry keeps of one node, and the one function that moves a node's health."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tritonfleet.protocol import Heartbeat, NodeHealth, NodeView

Clock = Callable[[], float]

# Heartbeat fields that move with every request; the registry coalesces their updates.
LOAD_FIELDS = frozenset({"in_flight", "pending"})


@dataclass(frozen=True)
class ProbeTarget:
    """The two addresses a probe must reach for its node to count as alive."""

    node_id: str
    manager_url: str
    triton_http_url: str


def new_secret() -> str:
    """A node's secret: 256 random bits, shown once to the node that registers."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> bytes:
    # A plain hash suffices: the secret is 256 random bits, beyond any guessing a slow hash
    # would slow down; it keeps the secret itself out of memory dumps and reprs.
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True)
class NodeRecord:
    heartbeat: Heartbeat
    last_heartbeat_s: float
    secret_digest: bytes = field(repr=False)
    health: NodeHealth = NodeHealth.HEALTHY
    probe_failures: int = 0
    # Re-admission needs fresh evidence from both sides: a probe success *and* a heartbeat
    # received after the node fell, so a stale pre-failure heartbeat cannot vouch for it.
    heard_since_unhealthy: bool = False

    @property
    def node_id(self) -> str:
        return self.heartbeat.node_id

    def owned_by(self, secret: str | None) -> bool:
        """Whether `secret` is this node's; in constant time, so timing reveals nothing of it."""
        return secret is not None and hmac.compare_digest(digest(secret), self.secret_digest)

    def target(self) -> ProbeTarget:
        hb = self.heartbeat
        return ProbeTarget(hb.node_id, hb.manager_url, hb.triton_http_url)

    def view(self, now_s: float) -> NodeView:
        return NodeView.model_validate(
            {
                **self.heartbeat.model_dump(),
                "health": self.health,
                "last_heartbeat_age_s": max(0.0, now_s - self.last_heartbeat_s),
                "probe_failures": self.probe_failures,
            }
        )


def next_health(
    current: NodeHealth, *, probe_failures: int, threshold: int, heard_since_unhealthy: bool
) -> NodeHealth:
    """The only place a node's health changes.

    healthy → unhealthy after `threshold` consecutive probe failures; unhealthy → healthy once
    the last probe passed and a heartbeat arrived since the fall. Silence is not a state here:
    a node without heartbeats for a TTL is removed from the registry instead.
    """
    if probe_failures >= threshold:
        return NodeHealth.UNHEALTHY
    if current is NodeHealth.UNHEALTHY and (probe_failures > 0 or not heard_since_unhealthy):
        return NodeHealth.UNHEALTHY
    return NodeHealth.HEALTHY


def settle(record: NodeRecord, threshold: int) -> NodeRecord:
    """The record with its health brought in line with its evidence."""
    health = next_health(
        record.health,
        probe_failures=record.probe_failures,
        threshold=threshold,
        heard_since_unhealthy=record.heard_since_unhealthy,
    )
    if health is record.health:
        return record
    return replace(record, health=health, heard_since_unhealthy=False)


def same_except_load(a: Heartbeat, b: Heartbeat) -> bool:
    return a.model_dump(exclude=set(LOAD_FIELDS)) == b.model_dump(exclude=set(LOAD_FIELDS))
