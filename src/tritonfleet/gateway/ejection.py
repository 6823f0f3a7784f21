"""Passive health checking: nodes that keep failing are skipped for a growing back-off."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(slots=True)
class _Record:
    failures: int = 0
    ejections: int = 0
    until: float = 0.0


class Ejector:
    """Counts consecutive failures per node and ejects a node once they reach a threshold.

    The first ejection lasts `base_s`; each ejection that follows without a success in between
    doubles it, up to `max_s`. When the back-off ends the node is tried again (half-open): one
    success clears its record, one more failure ejects it again at once, for longer. This reacts
    within one request to a killed node, long before the health checker's TTL runs out.
    """

    def __init__(
        self,
        after_failures: int,
        base_s: float,
        max_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.after_failures = after_failures
        self.base_s = base_s
        self.max_s = max_s
        self.clock = clock
        self._records: dict[str, _Record] = {}
        self._identities: dict[str, str] = {}

    def failed(self, node_id: str) -> bool:
        """Record a failure; True when it ejects the node."""
        record = self._records.setdefault(node_id, _Record())
        record.failures += 1
        if record.failures < self.after_failures and record.ejections == 0:
            return False
        backoff_s = min(self.base_s * 2**record.ejections, self.max_s)
        record.ejections += 1
        record.failures = 0
        record.until = self.clock() + backoff_s
        return True

    def succeeded(self, node_id: str) -> None:
        if node_id in self._records:
            del self._records[node_id]

    def track(self, identities: Mapping[str, str]) -> None:
        """Follow the cluster's view, {node_id: identity of the running process}: a node that
        left it, or came back as a new process (new addresses), starts again with a clean record."""
        for node_id in list(self._records):
            if node_id not in identities or identities[node_id] != self._identities.get(node_id):
                del self._records[node_id]
        self._identities = dict(identities)

    def ejected(self) -> frozenset[str]:
        now = self.clock()
        return frozenset(node for node, record in self._records.items() if record.until > now)
