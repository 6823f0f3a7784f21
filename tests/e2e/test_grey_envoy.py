"""Grey failures on the Envoy fast path: a hung node is ejected and its requests answered by
another, a slow node leaves the rotation; and overload, on both data planes, refused at once
with Retry-After. (The Python plane's hung and slow nodes: test_netns.py, tests/gateway.)
(Behaviour only: the times these take are printed, for the benchmark report, never asserted.)"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import DATA_PLANES, MODEL_DIRS, fleet_config, repository, simple_body
from tests.e2e.load import Load
from tritonfleet.gateway.envoy.resources import GRPC_INFER
from tritonfleet.netns.faults import triton_pid
from tritonfleet.up.cluster import LocalCluster, NodeSpec

SIMPLE = simple_body(2)
# node-2's `latency` takes 20 times as long as node-1's: a slow node, not a failing one.
SLOW_SERVICE_MS = 400


def latency_body(service_time_ms: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32", "data": [7.0]}]
    }
    if service_time_ms is not None:
        body["parameters"] = {"service_time_ms": service_time_ms}
    return body


def slow_latency(repo: Path) -> None:
    """`latency` in `repo`, its service time SLOW_SERVICE_MS."""
    model = repo / "latency"
    model.mkdir()
    config = (MODEL_DIRS["latency"] / "config.pbtxt").read_text()
    (model / "config.pbtxt").write_text(
        config.replace('string_value: "20"', f'string_value: "{SLOW_SERVICE_MS}"')
    )
    (model / "1").symlink_to(MODEL_DIRS["latency"] / "1", target_is_directory=True)


def start(local: LocalCluster) -> LocalCluster:
    try:
        local.start()
    except BaseException:
        local.stop()
        raise
    return local


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("grey")
    repos = {node_id: repository(root / "repos" / node_id, ["simple"]) for node_id in ("node-1", "node-2")}
    (repos["node-1"] / "latency").symlink_to(MODEL_DIRS["latency"], target_is_directory=True)
    slow_latency(repos["node-2"])
    config = fleet_config(
        root,
        gateway={"data_plane": "envoy", "envoy_admin_socket": str(root / "admin.sock")},
        node={"drain_timeout_s": 10.0},
    )
    specs = [NodeSpec(node_id, {"model_repository": str(repo)}) for node_id, repo in repos.items()]
    local = start(LocalCluster(config, root / "state", specs))
    try:
        wait_until(lambda: envoy_stat(local, "cluster.model.simple.membership_total") == 2, "envoy has both")
        wait_until(lambda: envoy_stat(local, "cluster.model.latency.membership_total") == 2, "both latencies")
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module", params=DATA_PLANES)
def small(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One node, and bounds tiny enough for a handful of requests to exceed them; on both data
    planes (the Python plane's own bounds are gateway/admission.py)."""
    root = tmp_path_factory.mktemp("overload")
    gateway = {
        "data_plane": request.param,
        "envoy_admin_socket": str(root / "admin.sock"),
        "max_in_flight_per_node": 2,
        "max_queued": 2,
        "retry_after_s": 3,
    }
    specs = [
        NodeSpec("node-1", {"model_repository": str(repository(root / "repos" / "node-1", ["latency"]))})
    ]
    local = start(LocalCluster(fleet_config(root, gateway=gateway), root / "state", specs))
    try:
        if request.param == "envoy":
            wait_until(
                lambda: envoy_stat(local, "cluster.model.latency.membership_total") == 1, "envoy has it"
            )
            wait_until(lambda: envoy_stat(local, "cluster.grpc.latency.membership_total") == 1, "and gRPC's")
        yield local
    finally:
        local.stop()


def admin(fleet: LocalCluster) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=str(fleet.config.gateway.envoy_admin_socket))
    return httpx.Client(transport=transport, base_url="http://envoy", timeout=5)


def envoy_stat(fleet: LocalCluster, name: str) -> int:
    with admin(fleet) as client:
        stats = client.get("/stats", params={"filter": f"^{name}$"}).text
    return int(stats.split(":")[1]) if stats else 0


def host_health(fleet: LocalCluster, cluster: str, node_id: str) -> dict[str, Any]:
    """How Envoy sees a node in a cluster: its `health_status` (absent: not a member)."""
    address = triton_address(fleet, node_id)
    with admin(fleet) as client:
        statuses = client.get("/clusters", params={"format": "json"}).json()["cluster_statuses"]
    for status in statuses:
        if status["name"] == cluster:
            for host in status.get("host_statuses", []):
                socket = host["address"]["socket_address"]
                if f"{socket['address']}:{socket['port_value']}" == address:
                    return dict(host["health_status"])
    return {}


def triton_address(fleet: LocalCluster, node_id: str) -> str:
    nodes = httpx.get(f"{fleet.gateway_url}/v1/nodes", headers=fleet.cluster_auth).json()["nodes"]
    url = next(node["triton_http_url"] for node in nodes if node["node_id"] == node_id)
    return str(url).split("://", 1)[1].rstrip("/")


def per_try_timeout(fleet: LocalCluster, path: str) -> str:
    """The attempt timeout of `simple`'s fast route on `path`, as Envoy has it."""
    with admin(fleet) as client:
        dump = client.get("/config_dump", params={"resource": "dynamic_route_configs"}).json()
    for config in dump["configs"]:
        for host in config["route_config"].get("virtual_hosts", []):
            for route in host["routes"]:
                if route["match"].get("path") == path and route["name"] == "model 'simple'":
                    return str(route["route"]["retry_policy"].get("per_try_timeout", ""))
    return ""


EJECTED_LATE = "cluster.model.simple.outlier_detection.ejections_enforced_consecutive_local_origin_failure"


def test_a_hung_node_is_ejected_at_its_first_late_attempt_and_no_request_fails(fleet: LocalCluster) -> None:
    victim = fleet.nodes["node-2"]
    assert victim.proc is not None
    triton = triton_pid(victim.proc.pid)
    with Load(fleet.gateway_url, "simple", SIMPLE, clients=4) as load:
        # The attempt timeout follows the model's latency: the floor, for `simple`.
        floor = f"{fleet.config.gateway.attempt_timeout_floor_s:.3f}s"
        wait_until(lambda: per_try_timeout(fleet, "/v2/models/simple/infer") == floor, "the floor", 20)
        ejected_before = envoy_stat(fleet, EJECTED_LATE)
        os.kill(triton, signal.SIGSTOP)  # a hung GPU: its sockets open, no answer
        stopped_at = time.monotonic()
        try:
            wait_until(lambda: envoy_stat(fleet, EJECTED_LATE) > ejected_before, "node-2 ejected", 20, 0.01)
            print(f"\nhung node ejected {time.monotonic() - stopped_at:.2f} s after SIGSTOP")
            time.sleep(3.0)
        finally:
            os.kill(triton, signal.SIGCONT)
        resumed_at = len(load.answers)
        wait_until(lambda: "node-2" in {node for _, node in load.answers[resumed_at:]}, "node-2 back", 60)
    assert load.failures() == [], "every request was answered, by node-1 when node-2 hung"


class GrpcLoad(Load):
    """The same over gRPC: `simple`'s ModelInfer, the serving node from the trailing metadata."""

    def __init__(self, address: str, clients: int) -> None:
        super().__init__("", "simple", SIMPLE, clients)
        self.address = address

    def _run(self) -> None:
        import numpy as np
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        tensors = [grpcclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
        for tensor in tensors:
            tensor.set_data_from_numpy(np.full((1, 16), 2, dtype=np.int32))
        with grpcclient.InferenceServerClient(self.address) as client:
            while not self.stopping.is_set():
                try:
                    client.infer("simple", tensors, client_timeout=30)
                    self.answers.append((200, ""))
                except InferenceServerException as exc:
                    self.answers.append((0, f"{exc.status()} {exc.message()}"))


def test_a_hung_node_costs_no_grpc_call_either(fleet: LocalCluster) -> None:
    fleet.wait_gateway_sees({"node-1", "node-2"}, 60)
    wait_until(lambda: envoy_stat(fleet, "cluster.grpc.simple.membership_total") == 2, "both in gRPC's", 30)
    victim = fleet.nodes["node-2"]
    assert victim.proc is not None
    triton = triton_pid(victim.proc.pid)
    address = f"{fleet.config.gateway.host}:{fleet.config.gateway.grpc_port}"
    ejected = "cluster.grpc.simple.outlier_detection.ejections_enforced_consecutive_local_origin_failure"
    with GrpcLoad(address, clients=4) as load:
        floor = f"{fleet.config.gateway.attempt_timeout_floor_s:.3f}s"
        wait_until(lambda: per_try_timeout(fleet, GRPC_INFER) == floor, "the floor", 20)
        ejected_before = envoy_stat(fleet, ejected)
        os.kill(triton, signal.SIGSTOP)
        try:
            wait_until(lambda: envoy_stat(fleet, ejected) > ejected_before, "node-2 ejected", 20, 0.01)
            time.sleep(2.0)
        finally:
            os.kill(triton, signal.SIGCONT)
    assert load.failures() == []


def test_a_slow_node_leaves_the_rotation_while_its_peer_serves(fleet: LocalCluster) -> None:
    fleet.wait_gateway_sees({"node-1", "node-2"}, 30)
    with Load(fleet.gateway_url, "latency", latency_body(), clients=8) as load:
        started = time.monotonic()
        wait_until(
            lambda: host_health(fleet, "model.latency", "node-2").get("eds_health_status") == "UNHEALTHY",
            "node-2 out of latency's rotation",
            30,
            0.05,
        )
        print(f"\nslow node ejected {time.monotonic() - started:.2f} s after the load began")
        assert host_health(fleet, "model.latency", "node-1").get("eds_health_status") == "HEALTHY"
        assert host_health(fleet, "model.simple", "node-2").get("eds_health_status") == "HEALTHY", (
            "slow for `latency` only: still in `simple`'s rotation"
        )
    assert load.failures() == []
    assert {node for _, node in load.answers} == {"node-1", "node-2"}


def test_overload_is_refused_at_once_with_retry_after_in_tritons_words(small: LocalCluster) -> None:
    """2 in flight and 2 queued: of 12 requests at once, the rest is refused, not kept waiting."""
    url = f"{small.gateway_url}/v2/models/latency/infer"
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: httpx.post(url, json=latency_body(1500), timeout=60), range(12)))
    refused_within_s = max((a.elapsed.total_seconds() for a in answers if a.status_code == 503), default=0)
    print(f"\noverload refused within {refused_within_s:.3f} s")
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) == {200, 503}, statuses
    assert 2 <= statuses.count(200) <= 4 + 2, "the bounds' worth served (plus any that came after one ended)"
    for refused in (answer for answer in answers if answer.status_code == 503):
        assert refused.headers["Retry-After"] == "3"
        assert refused.headers["content-type"].startswith("application/json")
        assert "at its limit" in json.loads(refused.content)["error"]
    if small.config.gateway.data_plane == "envoy":
        assert envoy_stat(small, "cluster.model.latency.upstream_rq_pending_overflow") >= 1


def test_grpc_overload_is_unavailable_with_a_message(small: LocalCluster) -> None:
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    address = f"{small.config.gateway.host}:{small.config.gateway.grpc_port}"

    def call(_: int) -> str:
        with grpcclient.InferenceServerClient(address) as client:
            tensor = grpcclient.InferInput("INPUT0", [1, 1], "FP32")
            tensor.set_data_from_numpy(np.array([[7.0]], dtype=np.float32))
            try:
                client.infer("latency", [tensor], parameters={"service_time_ms": 1500}, client_timeout=60)
            except InferenceServerException as exc:
                return f"{exc.status()} {exc.message()}"
            return "OK"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(call, range(8)))
    assert "OK" in outcomes
    refused = [outcome for outcome in outcomes if outcome != "OK"]
    assert refused, outcomes
    assert all(
        outcome.startswith("StatusCode.UNAVAILABLE") and "at its limit" in outcome for outcome in refused
    )


def wait_until(done: object, what: str, timeout_s: float = 10.0, every_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(every_s)
