"""Nodes die and drain under load; clients never see a failure that could have been retried."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import DATA_PLANES, cluster
from tests.e2e.load import Load
from tritonfleet.health.status import data_plane
from tritonfleet.up.cluster import LocalCluster


@pytest.fixture(scope="module", params=DATA_PLANES)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = cluster(
        tmp_path_factory.mktemp("faults"),
        {"node-1": ["simple", "latency"], "node-2": ["simple", "latency"]},
        gateway={"data_plane": request.param},
    )
    try:
        local.start()
        yield local
    finally:
        local.stop()


def triton_url(fleet: LocalCluster, node_id: str) -> str:
    nodes = httpx.get(f"{fleet.gateway_url}/v1/nodes", headers=fleet.cluster_auth).json()["nodes"]
    return next(node["triton_http_url"] for node in nodes if node["node_id"] == node_id)


def wait_refused(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v2/health/live", timeout=1)
        except httpx.TransportError:
            return
        time.sleep(0.01)
    raise AssertionError(f"{url} still answers {timeout_s} s after its manager was killed")


def test_a_killed_node_causes_no_failed_request_and_is_readmitted_after_restart(fleet: LocalCluster) -> None:
    victim = fleet.nodes["node-2"]
    victim_triton = triton_url(fleet, "node-2")
    with Load(fleet.gateway_url) as load:
        time.sleep(1.0)
        victim.signal(signal.SIGKILL)  # the manager; its guard SIGKILLs its Triton
        victim.proc.wait()  # type: ignore[union-attr]
        wait_refused(victim_triton, 5.0)
        killed_at = len(load.answers)
        fleet.wait_gateway_sees({"node-1"}, 10)  # the health checker drops it within a TTL
        after_kill = load.since(killed_at)
        victim.start()
        fleet.wait_node("node-2", 120)
        fleet.wait_gateway_sees({"node-1", "node-2"}, 10)
        readmitted_at = len(load.answers)
        time.sleep(1.0)
    failures = [answer for answer in load.answers if answer[0] != 200]
    assert failures == [], "every request was served, by another node if need be"
    # The dead node leaves the rotation at once (passive ejection), long before the TTL runs out.
    assert [node for _, node in after_kill[20:]].count("node-2") == 0
    assert "node-2" in {node for _, node in load.since(readmitted_at)}, "node-2 serves again"


def test_sigterm_drains_a_node_without_losing_in_flight_requests(fleet: LocalCluster) -> None:
    body = {
        "parameters": {"service_time_ms": 1500},
        "inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32", "data": [7.0]}],
    }
    victim = fleet.nodes["node-2"]
    fleet.wait_gateway_sees({"node-1", "node-2"}, 10)
    with ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(httpx.post, f"{fleet.gateway_url}/v2/models/latency/infer", json=body, timeout=30)
            for _ in range(8)
        ]
        time.sleep(0.5)
        victim.signal(signal.SIGTERM)
        answers = [future.result() for future in futures]
    assert [answer.status_code for answer in answers] == [200] * 8
    assert "node-2" in {answer.headers["X-Tritonfleet-Node"] for answer in answers}
    assert victim.proc is not None and victim.proc.wait(30) == 0, "the manager exits cleanly after draining"
    fleet.wait_gateway_sees({"node-1"}, 10)
    victim.start()
    fleet.wait_node("node-2", 120)


def gateway_view(fleet: LocalCluster) -> dict[str, Any]:
    answer = httpx.get(f"{fleet.gateway_url}/v1/nodes", headers=fleet.cluster_auth, timeout=5)
    answer.raise_for_status()
    view: dict[str, Any] = answer.json()
    return view


def stale_gauge(fleet: LocalCluster) -> float:
    metrics = httpx.get(f"{fleet.gateway_url}/metrics", timeout=5).text
    [line] = [
        line for line in metrics.splitlines() if line.startswith("tritonfleet_gateway_node_view_stale ")
    ]
    return float(line.split()[1])


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.1)


def test_with_the_control_plane_down_the_gateway_routes_on_its_last_view_and_still_ejects(
    fleet: LocalCluster,
) -> None:
    """Every health checker down stops no inference; a node dying meanwhile is ejected all the
    same; the restarted checker rebuilds its registry from heartbeats with no 'no node' burst."""
    fleet.wait_gateway_sees({"node-1", "node-2"}, 10)
    assert not gateway_view(fleet)["stale"] and stale_gauge(fleet) == 0
    victim = fleet.nodes["node-2"]
    victim_triton = triton_url(fleet, "node-2")
    with Load(fleet.gateway_url) as load:
        fleet.health.signal(signal.SIGKILL)
        fleet.health.proc.wait()  # type: ignore[union-attr]
        # Past the TTL, after which the gateway once dropped every node.
        time.sleep(fleet.config.health.ttl_s + 1)
        view = gateway_view(fleet)
        assert view["stale"] and stale_gauge(fleet) == 1
        assert {node["node_id"] for node in view["nodes"]} == {"node-1", "node-2"}
        assert "node view STALE" in data_plane(fleet.gateway_url, None, fleet.cluster_auth)
        victim.signal(signal.SIGKILL)
        victim.proc.wait()  # type: ignore[union-attr]
        wait_refused(victim_triton, 5.0)
        time.sleep(1.0)
        fleet.health.start()
        wait_until(lambda: not gateway_view(fleet)["stale"], 15, "the gateway's view stayed stale")
        fleet.wait_gateway_sees({"node-1"}, 10)
    failures = [answer for answer in load.answers if answer[0] != 200]
    assert failures == [], "every request was served throughout"
    victim.start()
    fleet.wait_node("node-2", 120)
    fleet.wait_gateway_sees({"node-1", "node-2"}, 10)
