"""What the gateway reads from Envoy's admin: the p99s the attempt timeouts follow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from tritonfleet.gateway.envoy.outliers import HostCounts
from tritonfleet.gateway.envoy.stats import EnvoyStats
from tritonfleet.gateway.metrics import GatewayMetrics


class Recorder:
    def __init__(self) -> None:
        self.p99s_ms: list[dict[str, float | None]] = []

    def hosts(self, clusters: Mapping[str, Mapping[str, HostCounts]]) -> None:
        pass

    def p99s(self, p99s_ms: Mapping[str, float | None]) -> None:
        self.p99s_ms.append(dict(p99s_ms))


def admin(timeouts: list[int], hedges: dict[int, int]) -> httpx.AsyncClient:
    """Envoy's admin for two model clusters, `simple` with per-try timeouts counted so far as
    `timeouts` gives them, one reading after another; `latency` with retries (hedges) counted
    so far: `hedges[timeouts]`."""
    readings = iter(timeouts)

    def stats() -> dict[str, Any]:
        histograms = {
            "supported_quantiles": [50, 99],
            "computed_quantiles": [
                {"name": f"cluster.model.{m}.upstream_rq_time", "values": [{}, {"interval": p99}]}
                for m, p99 in (("simple", 260.0), ("latency", 21.0))
            ],
        }
        cut = next(readings)
        counters = [
            {"name": "cluster.model.simple.upstream_rq_per_try_timeout", "value": cut},
            # A hedge (on a per-try timeout) counts as a retry.
            {"name": "cluster.model.latency.upstream_rq_retry", "value": hedges.get(cut, 0)},
        ]
        return {"stats": [*counters, {"histograms": histograms}]}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/clusters":
            statuses = [{"name": f"model.{m}", "host_statuses": []} for m in ("simple", "latency")]
            return httpx.Response(200, json={"cluster_statuses": statuses})
        return httpx.Response(200, json=stats())

    return httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://envoy")


async def test_an_interval_with_cut_attempts_gives_no_p99_for_that_cluster() -> None:
    """A hung node's cut attempts are in Envoy's upstream_rq_time: read as the model's pace,
    they would raise the attempt timeout at every reading."""
    recorder = Recorder()
    async with admin([0, 3, 3, 3, 5, 5, 5], hedges={5: 2}) as client:
        stats = EnvoyStats(client, GatewayMetrics(CollectorRegistry()), lambda host: None, recorder)
        for _ in range(7):
            await stats.refresh()
    # The reading after the cut attempts too: Envoy's histogram interval ends at its own flush.
    assert recorder.p99s_ms == [
        {"model.simple": 260.0, "model.latency": 21.0},
        {"model.simple": None, "model.latency": 21.0},
        {"model.simple": None, "model.latency": 21.0},
        {"model.simple": 260.0, "model.latency": 21.0},
        {"model.simple": None, "model.latency": None},
        {"model.simple": None, "model.latency": None},
        {"model.simple": 260.0, "model.latency": 21.0},
    ]
