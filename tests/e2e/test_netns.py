"""A cluster whose hosts are network namespaces on a bridge: it serves across them, survives a
partitioned node, and its faults and cleanup work. Needs root and iproute2: fails without."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.e2e.cluster import DATA_PLANES, fleet_config, repository, simple_body
from tests.e2e.load import Load
from tritonfleet.netns import faults
from tritonfleet.netns.cluster import NetnsCluster
from tritonfleet.netns.hosts import (
    FaultUnsupported,
    HostNetwork,
    NetnsUnavailable,
    in_netns,
    list_links,
    list_netns,
    require_netns,
    run,
    sweep_leftovers,
)

NODES = ("node-1", "node-2")


def require() -> None:
    """The test failed (not skipped), saying what is missing, unless namespaces can be made."""
    try:
        require_netns()
    except NetnsUnavailable as exc:
        pytest.fail(f"this test needs network namespaces: {exc}")


def left_behind(prefix: str) -> list[str]:
    return [name for name in (*list_netns(), *list_links()) if name.startswith(f"{prefix}-")]


@pytest.fixture(scope="module", params=DATA_PLANES)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    tmp = tmp_path_factory.mktemp("netns")
    repositories = {node: repository(tmp / "repos" / node, ["simple", "latency"]) for node in NODES}
    require()
    with HostNetwork() as hosts:
        local = NetnsCluster(
            hosts, fleet_config(tmp, gateway={"data_plane": request.param}), tmp / "state", repositories
        )
        try:
            local.start()
            yield local
        finally:
            local.stop()
    assert left_behind(hosts.prefix) == [], "the cluster's namespaces and links are gone"


def wait_for(done: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_the_gateway_serves_across_namespaces_with_the_nodes_bridge_addresses(
    fleet: NetnsCluster, http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    assert fleet.gateway_url.startswith(f"http://{fleet.hosts['gateway'].address}:")
    served = {
        httpx.post(f"{fleet.gateway_url}/v2/models/simple/infer", json=simple_body(1)).headers[
            "X-Tritonfleet-Node"
        ]
        for _ in range(8)
    }
    assert served == set(NODES), "round robin reaches both nodes across the bridge"
    for client, module in ((http, httpclient), (grpc, grpcclient)):
        inputs = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
        for tensor in inputs:
            tensor.set_data_from_numpy(np.full((1, 16), 3, dtype=np.int32))
        assert client.infer("simple", inputs).as_numpy("OUTPUT0").tolist() == [[6] * 16]
    nodes = httpx.get(f"{fleet.gateway_url}/v1/nodes", headers=fleet.cluster_auth).json()["nodes"]
    addresses = {
        node["node_id"]: {
            httpx.URL(node[key]).host for key in ("manager_url", "triton_http_url", "triton_grpc_url")
        }
        for node in nodes
    }
    assert addresses == {node: {fleet.hosts[node].address} for node in NODES}


def test_a_partitioned_node_causes_no_failed_request_and_serves_again_after_heal(fleet: NetnsCluster) -> None:
    with Load(fleet.gateway_url) as load:
        time.sleep(1.0)
        fleet.partition("node-2")
        try:
            fleet.wait_gateway_sees({"node-1"}, 15)  # its heartbeats stop: dropped within a TTL
            time.sleep(1.0)
        finally:
            fleet.heal("node-2")
        fleet.wait_gateway_sees(set(NODES), 30)
        healed_at = len(load.answers)
        wait_for(lambda: "node-2" in {node for _, node in load.since(healed_at)}, "node-2 serves after heal")
    failures = [answer for answer in load.answers if answer[0] != 200]
    assert failures == [], "every request was served, by node-1 while node-2 was cut off"


def test_a_paused_triton_is_stopped_and_runs_again_when_resumed(fleet: NetnsCluster) -> None:
    pid = fleet.triton_pid("node-2")
    fleet.pause("node-2")
    try:
        wait_for(lambda: faults.process_state(pid) == "T", "tritonserver is stopped")
    finally:
        fleet.resume("node-2")
    wait_for(lambda: faults.process_state(pid) != "T", "tritonserver runs again")
    assert fleet.triton_pid("node-2") == pid, "the same process, not a restarted one"
    fleet.wait_gateway_sees(set(NODES), 30)


def served_by(answers: list[tuple[int, str]], node_id: str) -> int:
    return sum(1 for status, node in answers if status == 200 and node == node_id)


@pytest.mark.parametrize("fault", ["pause", "blackhole"])
def test_a_hung_or_blackholed_node_fails_no_request_and_leaves_the_rotation(
    fleet: NetnsCluster, fault: str
) -> None:
    """A hung GPU (tritonserver SIGSTOPped: sockets open, nothing answers) or a host whose
    packets all vanish: requests caught on it are hedged to the other node within the attempt
    timeout, and the node is ejected; it serves again once healed."""
    fleet.wait_gateway_sees(set(NODES), 30)
    with Load(fleet.gateway_url) as load:
        time.sleep(1.0)  # a history of the model's latency, for its attempt timeout
        getattr(fleet, fault)("node-2")
        try:
            time.sleep(1.0)
            mark = len(load.answers)
            time.sleep(2.0)
            during = load.since(mark)
        finally:
            fleet.heal("node-2")
        wait_for(lambda: served_by(load.answers[-40:], "node-2") > 0, "node-2 serves again", 60)
    assert [answer for answer in load.answers if answer[0] != 200] == []
    # Out of rotation within the first second: after it, the ejected node only gets the odd
    # half-open try at the end of its back-off, each hedged elsewhere, never an answer.
    assert served_by(during, "node-2") == 0 and served_by(during, "node-1") > 0


def test_a_throttled_node_is_ejected_as_slow_against_its_peer(fleet: NetnsCluster) -> None:
    """A node that still answers, ten times slower (tritonserver stopped 90% of the time)."""
    fleet.wait_gateway_sees(set(NODES), 30)
    with Load(fleet.gateway_url) as load:
        time.sleep(1.0)
        throttle = fleet.throttle("node-2", running_ms=5, stopped_ms=45)
        try:
            time.sleep(2.0)
            mark = len(load.answers)
            time.sleep(3.0)
            during = load.since(mark)
        finally:
            throttle.stop()
    assert [answer for answer in load.answers if answer[0] != 200] == []
    # Round robin would give it half; ejected, it gets only its half-open tries.
    assert served_by(during, "node-2") * 5 < served_by(during, "node-1")


def test_a_blackholed_node_lets_connections_hang_until_healed(fleet: NetnsCluster) -> None:
    manager = httpx.URL(manager_url(fleet, "node-2"))
    address = (manager.host, manager.port)
    fleet.blackhole("node-2")
    try:
        with pytest.raises(TimeoutError):  # no RST, no ICMP: the handshake never completes
            socket.create_connection(address, timeout=1.0).close()
    finally:
        fleet.heal("node-2")
    socket.create_connection(address, timeout=5.0).close()
    fleet.wait_gateway_sees(set(NODES), 30)


def test_degrade_applies_netem_or_says_the_kernel_has_none(fleet: NetnsCluster) -> None:
    try:
        fleet.degrade("node-2", delay_ms=1, loss_pct=0)
    except FaultUnsupported as exc:
        assert "netem" in str(exc)
        return
    try:
        assert "netem" in run(["tc", "qdisc", "show", "dev", fleet.hosts["node-2"].veth]).stdout
    finally:
        fleet.heal("node-2")
    assert "netem" not in run(["tc", "qdisc", "show", "dev", fleet.hosts["node-2"].veth]).stdout


def manager_url(fleet: NetnsCluster, node_id: str) -> str:
    nodes = httpx.get(f"{fleet.gateway_url}/v1/nodes", headers=fleet.cluster_auth).json()["nodes"]
    return str(next(node["manager_url"] for node in nodes if node["node_id"] == node_id))


def test_leaving_a_network_by_an_exception_removes_its_namespaces_links_and_processes() -> None:
    require()
    hosts = HostNetwork()
    with pytest.raises(RuntimeError), hosts:
        host = hosts.add("a")
        hosts.add("b")
        sleeper = subprocess.Popen(
            in_netns(host.netns, [sys.executable, "-c", "import time; time.sleep(600)"])
        )
        assert left_behind(hosts.prefix) != []
        raise RuntimeError("a test failing inside")
    assert left_behind(hosts.prefix) == []
    assert sleeper.wait(10) != 0, "the process in a namespace was killed"


def test_what_a_dead_run_left_is_swept(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    prefix = f"tf{dead.pid}n0"
    require()
    run(["ip", "netns", "add", f"{prefix}-x"])
    run(["ip", "link", "add", f"{prefix}-br", "type", "bridge"])
    assert sorted(sweep_leftovers()) == sorted([f"{prefix}-x", f"{prefix}-br"])
    assert left_behind(prefix) == []
