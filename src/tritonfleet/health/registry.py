"""The registry of live nodes: pure state, driven by heartbeats, probe results and a clock."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from tritonfleet.health.records import Clock, NodeRecord, ProbeTarget, same_except_load, settle
from tritonfleet.protocol import Heartbeat, NodeHealth, NodeList

log = logging.getLogger(__name__)


def _ignore(_version: int) -> None:
    pass


class Registry:
    """Nodes known from heartbeats, with the health that probes give them.

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

    @property
    def version(self) -> int:
        return self._version

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def heartbeat(self, heartbeat: Heartbeat) -> bool:
        """Record a register or heartbeat call (they are the same upsert); True if the node is new."""
        now_s = self._clock()
        old = self._nodes.get(heartbeat.node_id)
        if old is None:
            self._nodes[heartbeat.node_id] = NodeRecord(heartbeat, now_s)
            log.info("node added", extra={"node_id": heartbeat.node_id})
            self._bump()
            return True
        fresh = replace(old, heartbeat=heartbeat, last_heartbeat_s=now_s, heard_since_unhealthy=True)
        self._store(old, settle(fresh, self._threshold))
        return False

    def record_probe(self, node_id: str, ok: bool) -> None:
        old = self._nodes.get(node_id)
        if old is None:
            return  # removed while its probe was in flight
        failures = 0 if ok else old.probe_failures + 1
        self._store(old, settle(replace(old, probe_failures=failures), self._threshold))

    def remove(self, node_id: str) -> bool:
        """Deregister a node at once; False if it was not registered."""
        if self._nodes.pop(node_id, None) is None:
            return False
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
        return NodeList(version=self._version, nodes=views)

    def targets(self) -> list[ProbeTarget]:
        return [record.target() for record in self._nodes.values()]

    def counts(self) -> dict[NodeHealth, int]:
        counts = dict.fromkeys(NodeHealth, 0)
        for record in self._nodes.values():
            counts[record.health] += 1
        return counts

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
