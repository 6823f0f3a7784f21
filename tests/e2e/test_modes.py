"""The original design's data path: a remote scheduler service, and requests through the manager."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.cluster import cluster, simple_body
from tritonfleet.up.cluster import LocalCluster

SIMPLE = simple_body(5)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = cluster(
        tmp_path_factory.mktemp("modes"),
        {"node-1": ["simple"], "node-2": ["simple"]},
        # The Python data plane's modes: with Envoy's, Envoy balances and no scheduler is asked.
        gateway={"scheduler": "remote", "node_route": "manager", "data_plane": "python"},
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


def infer(fleet: LocalCluster) -> str:
    answer = httpx.post(f"{fleet.gateway_url}/v2/models/simple/infer", json=SIMPLE)
    assert answer.status_code == 200
    assert answer.json()["outputs"][0]["data"] == [10] * 16
    return answer.headers["X-Tritonfleet-Node"]


def inference_counts(nodes: dict[str, dict[str, str]]) -> dict[str, int]:
    """Each node's own count of `simple` inferences, from Triton's statistics."""
    return {
        node_id: httpx.get(f"{node['triton_http_url']}/v2/models/simple/stats").json()["model_stats"][0][
            "inference_count"
        ]
        for node_id, node in nodes.items()
    }


def test_remote_scheduler_and_manager_forwarding_spread_requests_round_robin(fleet: LocalCluster) -> None:
    nodes = {
        node["node_id"]: node
        for node in httpx.get(f"{fleet.health_url}/v1/nodes", headers=fleet.cluster_auth).json()["nodes"]
    }
    # Until both nodes have served once: a node's first heartbeats may still be settling
    # (a CI run saw six requests in a row go to one node right after start).
    deadline, seen = time.monotonic() + 15, set()
    while seen != set(nodes):
        assert time.monotonic() < deadline, f"only {sorted(seen)} served within 15 s"
        seen.add(infer(fleet))
    before = inference_counts(nodes)
    served = [infer(fleet) for _ in range(20)]
    assert served.count("node-1") == served.count("node-2") == 10
    after = inference_counts(nodes)
    assert {n: after[n] - before[n] for n in nodes} == {n: 10 for n in nodes}, "Triton's own statistics agree"


def test_every_service_serves_prometheus_metrics(fleet: LocalCluster) -> None:
    nodes = httpx.get(f"{fleet.health_url}/v1/nodes", headers=fleet.cluster_auth).json()["nodes"]
    for url in (fleet.gateway_url, fleet.scheduler_url, fleet.health_url, *(n["manager_url"] for n in nodes)):
        answer = httpx.get(f"{url}/metrics")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        assert list(text_string_to_metric_families(answer.text)), url
    assert metric_total(fleet.gateway_url, "tritonfleet_gateway_upstream_requests") >= 20
