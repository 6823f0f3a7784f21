"""The original design's data path: a remote scheduler service, and requests through the manager."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.cluster import cluster, simple_body
from tritonfleet.up import LocalCluster

SIMPLE = simple_body(5)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = cluster(
        tmp_path_factory.mktemp("modes"),
        {"node-1": ["simple"], "node-2": ["simple"]},
        gateway={"scheduler": "remote", "node_route": "manager"},
    )
    try:
        local.start()
        yield local
    finally:
        local.stop()


def metric_total(url: str, family: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(
        sample.value
        for metric in text_string_to_metric_families(text)
        if metric.name == family
        for sample in metric.samples
        if sample.name.endswith("_total") or sample.name == family
    )


def test_remote_scheduler_and_manager_forwarding_spread_requests_round_robin(fleet: LocalCluster) -> None:
    nodes = {node["node_id"]: node for node in httpx.get(f"{fleet.health_url}/v1/nodes").json()["nodes"]}
    served = []
    for _ in range(20):
        answer = httpx.post(f"{fleet.gateway_url}/v2/models/simple/infer", json=SIMPLE)
        assert answer.status_code == 200
        assert answer.json()["outputs"][0]["data"] == [10] * 16
        served.append(answer.headers["X-Tritonfleet-Node"])
    assert served.count("node-1") == served.count("node-2") == 10
    for node in nodes.values():
        stats = httpx.get(f"{node['triton_http_url']}/v2/models/simple/stats").json()["model_stats"][0]
        assert stats["inference_count"] == 10, "Triton's own statistics agree"


def test_every_service_serves_prometheus_metrics(fleet: LocalCluster) -> None:
    nodes = httpx.get(f"{fleet.health_url}/v1/nodes").json()["nodes"]
    for url in (fleet.gateway_url, fleet.scheduler_url, fleet.health_url, *(n["manager_url"] for n in nodes)):
        answer = httpx.get(f"{url}/metrics")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        assert list(text_string_to_metric_families(answer.text)), url
    assert metric_total(fleet.gateway_url, "tritonfleet_gateway_upstream_requests") >= 20
