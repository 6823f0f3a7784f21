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

Every reading also goes to the grey-failure judges (outliers.py, through `observer`): each model
cluster's hosts as Envoy counts them (read eight times a second: their latency is estimated from
samples of their requests in flight), and, every second, each cluster's p99 over Envoy's last
stats flush (`upstream_rq_time`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import grpc
import httpx

from tritonfleet.gateway.envoy.outliers import HostCounts
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
    r"|^cluster\.(model|grpc)\..*\.upstream_rq_time$"
    r"|^cluster\.(model|grpc)\..*\.upstream_rq_per_try_timeout$"
)
# Host samples a second (each a read of /clusters); the metrics and p99s are read every SAMPLES.
SAMPLES = 8
PER_TRY_TIMEOUT = ".upstream_rq_per_try_timeout"
RETRY = ".upstream_rq_retry"
_HTTP_ANSWER = re.compile(rf"vhost\.gateway\.route\.({'|'.join(FAST_ROUTES)})\.upstream_rq_(\d{{3}})")
_GRPC_ANSWER = re.compile(r"cluster\.(grpc\..*)\.grpc\.inference\.GRPCInferenceService\.ModelInfer\.(\d+)")
_GRPC_CODES = {code.value[0]: code.name for code in grpc.StatusCode}


class StatsObserver(Protocol):
    def hosts(self, clusters: Mapping[str, Mapping[str, HostCounts]]) -> None:
        """Each model cluster's hosts (host:port) as Envoy counts them now."""

    def p99s(self, p99s_ms: Mapping[str, float | None]) -> None:
        """Each model cluster's p99 over the last interval, in ms (None: no answer in it)."""


class EnvoyStats:
    def __init__(
        self,
        admin: httpx.AsyncClient,
        metrics: GatewayMetrics,
        node_of: Callable[[str], str | None],
        observer: StatsObserver | None = None,
    ) -> None:
        self.admin = admin
        self.metrics = metrics
        self.node_of = node_of
        self.observer = observer
        self._seen: dict[tuple[str, ...], int] = {}
        # The clusters whose attempts timed out in the interval before the last reading.
        self._timed_out_before: set[str] = set()
        # The nodes in Envoy's model clusters at the last reading, healthy or not.
        self.routed: set[str] = set()

    async def run(self, interval_s: float = 1.0) -> None:
        reading = 0
        while True:
            try:
                await self.refresh(stats=reading % SAMPLES == 0)
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                pass  # Envoy restarting, or a reading of resources as they change: the next one
            except Exception:
                # Never the end of the readings: the fast path's metrics and judges live on them.
                log.exception("reading Envoy's statistics failed; reading on")
            reading += 1
            await asyncio.sleep(interval_s / SAMPLES)

    async def refresh(self, stats: bool = True) -> None:
        """The hosts' counts; with `stats`, the routes' answers, retries and p99s too."""
        clusters = (await self.admin.get("/clusters", params={"format": "json"})).json()
        routed: set[str] = set()
        hosts: dict[str, dict[str, HostCounts]] = {}
        for cluster in clusters.get("cluster_statuses", []):
            if cluster["name"].startswith(CLUSTER_PREFIXES):
                routed |= self._cluster(cluster, hosts.setdefault(cluster["name"], {}))
        self.routed = routed
        if self.observer is not None:
            self.observer.hosts(hosts)
        if stats:
            await self._stats(hosts)

    async def _stats(self, clusters: Mapping[str, object]) -> None:
        stats = (await self.admin.get("/stats", params={"format": "json", "filter": _STATS})).json()
        retries = 0
        p99s_ms: dict[str, float | None] = dict.fromkeys(clusters)
        timed_out: set[str] = set()
        for stat in stats.get("stats", []):
            if "histograms" in stat:
                _p99s(stat["histograms"], p99s_ms)
                continue
            name, value = stat["name"], int(stat.get("value", 0))
            if name.endswith(RETRY):
                retries += value
            if name.endswith((RETRY, PER_TRY_TIMEOUT)) and self._grown(("taint", name), value):
                timed_out.add(name.removeprefix("cluster.").rpartition(".")[0])
            elif http := _HTTP_ANSWER.fullmatch(name):
                self.metrics.requests.labels(http[1], http[2]).inc(self._grown((name,), value))
            elif answer := _GRPC_ANSWER.fullmatch(name):
                code = _GRPC_CODES.get(int(answer[2]), answer[2])
                self.metrics.requests.labels("grpc:ModelInfer", code).inc(self._grown((name,), value))
        self.metrics.retries.inc(self._grown(("retries",), retries))
        # An interval in which attempts timed out measured the timeout, not the model: Envoy's
        # upstream_rq_time counts the cut attempts too, and a hung node would raise the p99,
        # hence the timeout, at every reading (0.25 s, 0.78, 2.4 in three seconds). A hedge on
        # a per-try timeout counts as a retry, not as a per-try timeout, so a retry taints the
        # interval too (a refused connection's as well: that interval is skipped, no harm). Such
        # a reading says nothing (None); nor does the next, since Envoy's histogram intervals
        # end at its own stats flush, not at this read.
        for cluster in (timed_out | self._timed_out_before) & p99s_ms.keys():
            p99s_ms[cluster] = None
        self._timed_out_before = timed_out
        if self.observer is not None:
            self.observer.p99s(p99s_ms)

    def _cluster(self, cluster: dict[str, Any], hosts: dict[str, HostCounts]) -> set[str]:
        """Adds the cluster's per-host counts to the metrics and to `hosts`; returns its nodes."""
        nodes = set()
        for host in cluster.get("host_statuses", []):
            address = host["address"]["socket_address"]
            host_port = f"{address['address']}:{address['port_value']}"
            counts = {stat["name"]: int(stat.get("value", 0)) for stat in host.get("stats", [])}
            hosts[host_port] = HostCounts(active=counts.get("rq_active", 0), total=counts.get("rq_total", 0))
            node = self.node_of(host_port)
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


def _p99s(histograms: dict[str, Any], p99s_ms: dict[str, float | None]) -> None:
    """Each known cluster's `upstream_rq_time` p99 over the last interval, into `p99s_ms`."""
    at = histograms["supported_quantiles"].index(99)
    for histogram in histograms.get("computed_quantiles", []):
        cluster = histogram["name"].removeprefix("cluster.").removesuffix(".upstream_rq_time")
        if cluster in p99s_ms:
            p99s_ms[cluster] = histogram["values"][at]["interval"]
