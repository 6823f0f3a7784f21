"""The registry of live nodes: pure state, driven by heartbeats, probe results and a clock."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from tritonfleet.health.errors import NodeIdTaken, NodeSecretRefused, UnknownNode
from tritonfleet.health.records import (
    Clock,
    NodeRecord,
    ProbeTarget,
    digest,
    new_secret,
    same_except_load,
    settle,
)
from tritonfleet.protocol import Heartbeat, NodeHealth, NodeList

log = logging.getLogger(__name__)


def _ignore(_version: int) -> None:
    pass


class Registry:
    """Nodes known from heartbeats, with the health that probes give them.

    A node id belongs to the node that registered it, until it deregisters or falls silent for
    a TTL: registration answers a fresh secret, of which only a hash is kept, and the node's
    heartbeats and deregistration must present it. So one holder of the cluster token cannot
    refresh, remove or take over another node's registration.

    `version` grows by one on every change a consumer cares about: a node added or removed,
    its health, or any heartbeat field (models, state, URLs, capacity). Load (`in_flight`,
    `pending`) changes on nearly every heartbeat of a busy node; bumping the version for each
    would wake every watcher once per node per heartbeat, so load-only changes are coalesced:
    they mark the registry dirty and the next `tick()` bumps the version once for all of them
    (the service ticks every 0.1 s). Any other bump carries pending load changes with it.

    No I/O and no asyncio: the caller feeds in heartbeats, probe results and ticks, and the
    clock is injected, so TTLs are testable without waiting. `on_change(version)` is called
    after every bump (the service uses it to wake watchers).
    """

    def __init__(
        self,
        *,
        ttl_s: float,
        unhealthy_threshold: int,
        clock: Clock = time.monotonic,
        on_change: Callable[[int], None] = _ignore,
    ) -> None:
        self._ttl_s = ttl_s
        self._threshold = max(1, unhealthy_threshold)
        self._clock = clock
        self._on_change = on_change
        self._nodes: dict[str, NodeRecord] = {}
        self._version = 0
        self._load_dirty = False
        self._started_s = clock()

    @property
    def version(self) -> int:
        return self._version

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def register(self, heartbeat: Heartbeat, secret: str | None) -> str:
        """Add a node and answer its new secret; or refresh a live node whose secret is presented,
        answering that same secret. Raises NodeIdTaken for a live node's id without its secret."""
        now_s = self._clock()
        old = self._nodes.get(heartbeat.node_id)
        # A node past its TTL is as good as gone, even before the next tick removes it.
        if old is None or now_s - old.last_heartbeat_s > self._ttl_s:
            fresh = new_secret()
            self._nodes[heartbeat.node_id] = NodeRecord(heartbeat, now_s, digest(fresh))
            log.info("node added", extra={"node_id": heartbeat.node_id})
            self._bump()
            return fresh
        if secret is None or not old.owned_by(secret):
            raise NodeIdTaken(
                heartbeat.node_id,
                f"node id {heartbeat.node_id!r} is held by a live node: present its secret, "
                "or register once that node has deregistered or expired",
            )
        self._refresh(old, heartbeat, now_s)
        return secret

    def heartbeat(self, heartbeat: Heartbeat, secret: str | None) -> None:
        """Refresh a registered node. Raises UnknownNode for an unregistered one (it must register
        again, and so get a secret) and NodeSecretRefused without its secret."""
        old = self._owned(heartbeat.node_id, secret)
        if old is None:
            raise UnknownNode(f"node {heartbeat.node_id!r} is not registered: register it (again)")
        self._refresh(old, heartbeat, self._clock())

    def record_probe(self, node_id: str, ok: bool) -> None:
        old = self._nodes.get(node_id)
        if old is None:
            return  # removed while its probe was in flight
        failures = 0 if ok else old.probe_failures + 1
        self._store(old, settle(replace(old, probe_failures=failures), self._threshold))

    def remove(self, node_id: str, secret: str | None) -> bool:
        """Deregister a node at once; False if it was not registered. Raises NodeSecretRefused
        without its secret."""
        if self._owned(node_id, secret) is None:
            return False
        del self._nodes[node_id]
        log.info("node deregistered", extra={"node_id": node_id})
        self._bump()
        return True

    def tick(self) -> list[str]:
        """Drop nodes silent for longer than the TTL and publish coalesced load; the ids dropped."""
        now_s = self._clock()
        expired = [n for n, r in self._nodes.items() if now_s - r.last_heartbeat_s > self._ttl_s]
        for node_id in expired:
            del self._nodes[node_id]
            log.warning("node expired: no heartbeat within the TTL", extra={"node_id": node_id})
        if expired or self._load_dirty:
            self._bump()
        return expired

    def listing(self, model: str | None = None, version: str | None = None) -> NodeList:
        """The nodes (all, or those serving `model`, optionally at `version`), sorted by id."""
        now_s = self._clock()
        views = [self._nodes[n].view(now_s) for n in sorted(self._nodes)]
        if model is not None:
            views = [v for v in views if v.serves(model, version)]
        warming_s = max(0.0, self._ttl_s - (now_s - self._started_s))
        return NodeList(version=self._version, nodes=views, warming_s=warming_s)

    def targets(self) -> list[ProbeTarget]:
        return [record.target() for record in self._nodes.values()]

    def counts(self) -> dict[NodeHealth, int]:
        counts = dict.fromkeys(NodeHealth, 0)
        for record in self._nodes.values():
            counts[record.health] += 1
        return counts

    def _owned(self, node_id: str, secret: str | None) -> NodeRecord | None:
        """The node's record (None if unregistered), once `secret` has proven to be its own."""
        record = self._nodes.get(node_id)
        if record is not None and not record.owned_by(secret):
            raise NodeSecretRefused(node_id, f"missing or wrong node secret for node {node_id!r}")
        return record

    def _refresh(self, old: NodeRecord, heartbeat: Heartbeat, now_s: float) -> None:
        fresh = replace(old, heartbeat=heartbeat, last_heartbeat_s=now_s, heard_since_unhealthy=True)
        self._store(old, settle(fresh, self._threshold))

    def _store(self, old: NodeRecord, new: NodeRecord) -> None:
        self._nodes[new.node_id] = new
        if new.health is not old.health:
            level = logging.WARNING if new.health is NodeHealth.UNHEALTHY else logging.INFO
            log.log(
                level,
                "node health changed",
                extra={"node_id": new.node_id, "health": new.health, "probe_failures": new.probe_failures},
            )
            self._bump()
        elif not same_except_load(old.heartbeat, new.heartbeat):
            self._bump()
        elif old.heartbeat != new.heartbeat:
            self._load_dirty = True

    def _bump(self) -> None:
        self._version += 1
        self._load_dirty = False
        self._on_change(self._version)
