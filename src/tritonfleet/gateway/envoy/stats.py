"""The gateway's metrics for the fast path, which only Envoy sees, from Envoy's statistics.

Every second the per-host counters of the model clusters (`/clusters?format=json`) and their
retries are read, and what grew since is added to the gateway's own metrics of the same names:

    tritonfleet_gateway_upstream_requests{node, outcome}   outcome: `success` (an answer below
        500), `error` (500 and above), `timeout`, `unavailable` (no connection): Envoy counts
        classes, not each status, per host
    tritonfleet_gateway_retries                             requests sent again to another node
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import httpx

from tritonfleet.gateway.envoy.resources import MODEL_CLUSTER_PREFIX
from tritonfleet.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

# Envoy's per-host counter → the gateway's outcome.
_OUTCOMES = {
    "rq_success": "success",
    "rq_error": "error",
    "rq_timeout": "timeout",
    "cx_connect_fail": "unavailable",
}


class EnvoyStats:
    def __init__(
        self, admin: httpx.AsyncClient, metrics: GatewayMetrics, node_of: Callable[[str], str | None]
    ) -> None:
        self.admin = admin
        self.metrics = metrics
        self.node_of = node_of
        self._seen: dict[tuple[str, ...], int] = {}

    async def run(self, interval_s: float = 1.0) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                await self.refresh()
            await asyncio.sleep(interval_s)

    async def refresh(self) -> None:
        clusters = (await self.admin.get("/clusters", params={"format": "json"})).json()
        for cluster in clusters.get("cluster_statuses", []):
            if cluster["name"].startswith(MODEL_CLUSTER_PREFIX):
                self._cluster(cluster)
        stats = (
            await self.admin.get(
                "/stats", params={"format": "json", "filter": r"^cluster\.model\..*\.upstream_rq_retry$"}
            )
        ).json()
        retries = sum(int(stat.get("value", 0)) for stat in stats.get("stats", []))
        self.metrics.retries.inc(self._grown(("retries",), retries))

    def _cluster(self, cluster: dict[str, Any]) -> None:
        for host in cluster.get("host_statuses", []):
            address = host["address"]["socket_address"]
            node = self.node_of(f"{address['address']}:{address['port_value']}")
            if node is None:
                continue
            for stat in host.get("stats", []):
                outcome = _OUTCOMES.get(stat["name"])
                if outcome is not None:
                    key = (cluster["name"], node, stat["name"])
                    self.metrics.upstream.labels(node, outcome).inc(
                        self._grown(key, int(stat.get("value", 0)))
                    )

    def _grown(self, key: tuple[str, ...], total: int) -> int:
        """How much a counter grew since last read; all of it after Envoy restarted (it fell)."""
        last = self._seen.get(key, 0)
        self._seen[key] = total
        return total - last if total >= last else total
