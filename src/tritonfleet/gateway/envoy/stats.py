"""The gateway's metrics for the fast path, which only Envoy sees, from Envoy's statistics.

Every second the per-host counters of the model clusters (`/clusters?format=json`), their
retries and the answers of the fast routes are read, and what grew since is added to the
gateway's own metrics of the same names:

    tritonfleet_gateway_requests{route, code}   route `infer`, code the HTTP status a client got
        (the fast routes' virtual cluster); route `grpc:ModelInfer`, code the gRPC status
        (Envoy's gRPC statistics of the gRPC clusters), as the Python gateway counts them
    tritonfleet_gateway_upstream_requests{node, outcome}   outcome: `success` (an answer below
        500), `error` (500 and above), `timeout`, `unavailable` (no connection): Envoy counts
        classes, not each status, per host
    tritonfleet_gateway_retries                             requests sent again to another node
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

import grpc
import httpx

from tritonfleet.gateway.envoy.resources import CLUSTER_PREFIXES, FAST_ROUTES
from tritonfleet.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

# Envoy's per-host counter → the gateway's outcome.
_OUTCOMES = {
    "rq_success": "success",
    "rq_error": "error",
    "rq_timeout": "timeout",
    "cx_connect_fail": "unavailable",
}
_STATS = (
    r"^cluster\.(model|grpc)\..*\.upstream_rq_retry$"
    rf"|^vhost\.gateway\.route\.({'|'.join(FAST_ROUTES)})\.upstream_rq_\d{{3}}$"
    r"|^cluster\.grpc\..*\.grpc\.inference\.GRPCInferenceService\.ModelInfer\.\d+$"
)
_HTTP_ANSWER = re.compile(rf"vhost\.gateway\.route\.({'|'.join(FAST_ROUTES)})\.upstream_rq_(\d{{3}})")
_GRPC_ANSWER = re.compile(r"cluster\.(grpc\..*)\.grpc\.inference\.GRPCInferenceService\.ModelInfer\.(\d+)")
_GRPC_CODES = {code.value[0]: code.name for code in grpc.StatusCode}


class EnvoyStats:
    def __init__(
        self, admin: httpx.AsyncClient, metrics: GatewayMetrics, node_of: Callable[[str], str | None]
    ) -> None:
        self.admin = admin
        self.metrics = metrics
        self.node_of = node_of
        self._seen: dict[tuple[str, ...], int] = {}
        # The nodes in Envoy's model clusters at the last reading, healthy or not.
        self.routed: set[str] = set()

    async def run(self, interval_s: float = 1.0) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                await self.refresh()
            await asyncio.sleep(interval_s)

    async def refresh(self) -> None:
        clusters = (await self.admin.get("/clusters", params={"format": "json"})).json()
        routed: set[str] = set()
        for cluster in clusters.get("cluster_statuses", []):
            if cluster["name"].startswith(CLUSTER_PREFIXES):
                routed |= self._cluster(cluster)
        self.routed = routed
        stats = (await self.admin.get("/stats", params={"format": "json", "filter": _STATS})).json()
        retries = 0
        for stat in stats.get("stats", []):
            name, value = stat["name"], int(stat.get("value", 0))
            if name.endswith(".upstream_rq_retry"):
                retries += value
            elif http := _HTTP_ANSWER.fullmatch(name):
                self.metrics.requests.labels(http[1], http[2]).inc(self._grown((name,), value))
            elif answer := _GRPC_ANSWER.fullmatch(name):
                code = _GRPC_CODES.get(int(answer[2]), answer[2])
                self.metrics.requests.labels("grpc:ModelInfer", code).inc(self._grown((name,), value))
        self.metrics.retries.inc(self._grown(("retries",), retries))

    def _cluster(self, cluster: dict[str, Any]) -> set[str]:
        """Adds the cluster's per-host counts; returns its nodes."""
        nodes = set()
        for host in cluster.get("host_statuses", []):
            address = host["address"]["socket_address"]
            node = self.node_of(f"{address['address']}:{address['port_value']}")
            if node is None:
                continue
            nodes.add(node)
            for stat in host.get("stats", []):
                outcome = _OUTCOMES.get(stat["name"])
                if outcome is not None:
                    key = (cluster["name"], node, stat["name"])
                    self.metrics.upstream.labels(node, outcome).inc(
                        self._grown(key, int(stat.get("value", 0)))
                    )
        return nodes

    def _grown(self, key: tuple[str, ...], total: int) -> int:
        """How much a counter grew since last read; all of it after Envoy restarted (it fell)."""
        last = self._seen.get(key, 0)
        self._seen[key] = total
        return total - last if total >= last else total
