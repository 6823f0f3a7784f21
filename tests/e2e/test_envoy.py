"""The Envoy data plane itself: stateless inference goes from Envoy straight to Triton, the rest
to the Python gateway; Envoy follows the node view; it never outlives its gateway. (Routing,
failover, errors and gRPC are tested on both data planes by the other end-to-end modules.)"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.e2e.cluster import cluster, simple_body
from tritonfleet.up.cluster import LocalCluster


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = cluster(
        tmp_path_factory.mktemp("envoy"),
        {"node-1": ["simple"], "node-2": ["simple", "latency"]},
        # The admin where a test knows it (the default is a socket in Envoy's run directory).
        gateway={"data_plane": "envoy", "envoy_admin_socket": str(tmp_path_factory.mktemp("admin") / "sock")},
    )
    try:
        local.start()
        # The gateway sees the nodes before Envoy has their clusters: until then the Python
        # gateway serves their requests (right, but not what these tests look at).
        wait_until(
            lambda: envoy_stat(local, "cluster.model.simple.membership_total") == 2, "envoy has both nodes"
        )
        wait_until(
            lambda: envoy_stat(local, "cluster.model.latency.v1.membership_total") == 1, "and latency's"
        )
        wait_until(lambda: envoy_stat(local, "cluster.grpc.simple.membership_total") == 2, "and gRPC's")
        yield local
    finally:
        local.stop()


def envoy_stat(fleet: LocalCluster, name: str) -> int:
    admin = httpx.HTTPTransport(uds=str(fleet.config.gateway.envoy_admin_socket))
    with httpx.Client(transport=admin, base_url="http://envoy") as client:
        stats = client.get("/stats", params={"filter": f"^{name}$"}).text
    return int(stats.split(":")[1]) if stats else 0


def gateway_metric(fleet: LocalCluster, name: str, **labels: str) -> float:
    """A sample of the gateway's /metrics (0 when absent)."""
    wanted = "{" + ",".join(f'{key}="{value}"' for key, value in sorted(labels.items())) + "}"
    for line in httpx.get(f"{fleet.gateway_url}/metrics").text.splitlines():
        if line.startswith(f"{name}{wanted} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def python_served(fleet: LocalCluster, route: str) -> float:
    """Requests the Python gateway answered on a route, from the latency it alone measures."""
    return gateway_metric(fleet, "tritonfleet_gateway_request_duration_seconds_count", route=route)


def envoys_of(pid: int) -> list[int]:
    """Envoy processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and (entry / "comm").read_text().strip() == "envoy":
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def test_stateless_inference_goes_from_envoy_straight_to_triton(fleet: LocalCluster) -> None:
    before_envoy = envoy_stat(fleet, "cluster.model.simple.upstream_rq_total")
    before_python = python_served(fleet, "infer")
    counted = gateway_metric(fleet, "tritonfleet_gateway_requests_total", route="infer", code="200")
    nodes = set()
    for _ in range(10):
        answer = httpx.post(f"{fleet.gateway_url}/v2/models/simple/infer", json=simple_body(1))
        assert answer.status_code == 200
        assert "server" not in answer.headers, "a Triton sends none"
        assert not [name for name in answer.headers if name.startswith("x-envoy")]
        nodes.add(answer.headers["X-Tritonfleet-Node"])
    assert nodes == {"node-1", "node-2"}, "round robin over the nodes serving it"
    assert envoy_stat(fleet, "cluster.model.simple.upstream_rq_total") - before_envoy == 10
    assert python_served(fleet, "infer") == before_python, "Python saw none"
    wait_until(lambda: upstream_successes(fleet) >= 10, "the gateway's metrics count them, by node")
    wait_until(
        lambda: (
            gateway_metric(fleet, "tritonfleet_gateway_requests_total", route="infer", code="200")
            >= counted + 10
        ),
        "and by the status the client got",
    )


def test_grpc_inference_goes_from_envoy_straight_to_triton_by_the_model_in_the_message(
    fleet: LocalCluster,
) -> None:
    before_envoy = envoy_stat(fleet, "cluster.grpc.simple.upstream_rq_total")
    before_python = python_served(fleet, "grpc:ModelInfer")
    counted = gateway_metric(fleet, "tritonfleet_gateway_requests_total", route="grpc:ModelInfer", code="OK")
    channel = grpc.insecure_channel(f"{fleet.config.gateway.host}:{fleet.config.gateway.grpc_port}")
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    nodes = set()
    for index in range(6):
        answer, call = stub.ModelInfer.with_call(
            simple_request(), metadata=(("x-request-id", f"fast-{index}"),), timeout=10
        )
        assert list(np.frombuffer(answer.raw_output_contents[0], dtype=np.int32)) == [2] * 16
        trailing = dict(call.trailing_metadata())
        assert trailing["x-request-id"] == f"fast-{index}", "as the Python gateway answers"
        nodes.add(trailing["x-tritonfleet-node"])
    # The version routes too; a model no node has, and a message Envoy cannot read, go to the
    # Python gateway, which answers as a Triton.
    stub.ModelInfer(simple_request(version="1"), timeout=10)
    with pytest.raises(grpc.RpcError) as unknown:
        stub.ModelInfer(service_pb2.ModelInferRequest(model_name="nope"), timeout=10)
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    assert "Request for unknown model: 'nope' is not found" in str(unknown.value.details())
    channel.close()
    assert nodes == {"node-1", "node-2"}
    assert envoy_stat(fleet, "cluster.grpc.simple.upstream_rq_total") - before_envoy == 6
    assert envoy_stat(fleet, "cluster.grpc.simple.v1.upstream_rq_total") >= 1
    assert python_served(fleet, "grpc:ModelInfer") == before_python + 1, "Python saw the unknown one"
    wait_until(
        lambda: (
            gateway_metric(fleet, "tritonfleet_gateway_requests_total", route="grpc:ModelInfer", code="OK")
            >= counted + 7
        ),
        "the gateway's metrics count them by gRPC status",
    )


def simple_request(version: str = "") -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="simple", model_version=version)
    for name in ("INPUT0", "INPUT1"):
        request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        request.raw_input_contents.append(np.ones(16, dtype=np.int32).tobytes())
    return request


def upstream_successes(fleet: LocalCluster) -> float:
    text = httpx.get(f"{fleet.gateway_url}/metrics").text
    by_node = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tritonfleet_gateway_upstream_requests_total{") and 'outcome="success"' in line
    ]
    return sum(by_node) if len(by_node) == 2 else 0.0


def test_envoys_admin_is_a_unix_socket_only_its_user_can_open(fleet: LocalCluster) -> None:
    """The admin can dump the configuration, the authorizer's secret with it: no TCP port."""
    socket = fleet.config.gateway.envoy_admin_socket
    assert socket is not None and socket.is_socket()
    assert socket.stat().st_mode & 0o077 == 0, oct(socket.stat().st_mode)
    view = httpx.get(f"{fleet.gateway_url}/v1/nodes", headers=fleet.cluster_auth, timeout=5.0).json()
    assert view["envoy"]["admin"] == str(socket)
    (envoy,) = envoys_of(fleet.gateway.pid)
    gw = fleet.config.gateway
    assert listening_ports(envoy) == {gw.port, gw.grpc_port}, "the front door, nothing else"


def listening_ports(pid: int) -> set[int]:
    """The TCP ports a process listens on: its sockets' inodes among /proc/net/tcp's listeners."""
    fds = Path(f"/proc/{pid}/fd")
    inodes = {os.readlink(fd).removeprefix("socket:[").removesuffix("]") for fd in fds.iterdir()}
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state, inode = row.split()[1], row.split()[3], row.split()[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def test_a_model_on_one_node_has_a_cluster_of_that_node(fleet: LocalCluster) -> None:
    for _ in range(4):
        answer = httpx.post(f"{fleet.gateway_url}/v2/models/latency/versions/1/infer", json=latency_body())
        assert (answer.status_code, answer.headers["X-Tritonfleet-Node"]) == (200, "node-2"), answer.text
    assert envoy_stat(fleet, "cluster.model.latency.v1.upstream_rq_total") >= 4


def test_envoy_follows_the_node_view(fleet: LocalCluster) -> None:
    """A node that leaves is out of Envoy's clusters; one that comes back is in again."""
    fleet.nodes["node-1"].signal(signal.SIGTERM)
    fleet.nodes["node-1"].wait_or_kill(30)
    fleet.wait_gateway_sees({"node-2"}, 20)
    wait_until(
        lambda: envoy_stat(fleet, "cluster.model.simple.membership_total") == 1, "node-1 out of the cluster"
    )
    served = {
        httpx.post(f"{fleet.gateway_url}/v2/models/simple/infer", json=simple_body(1)).headers[
            "X-Tritonfleet-Node"
        ]
        for _ in range(4)
    }
    assert served == {"node-2"}
    fleet.nodes["node-1"].start()
    fleet.wait_gateway_sees({"node-1", "node-2"}, 60)
    wait_until(lambda: envoy_stat(fleet, "cluster.model.simple.membership_total") == 2, "node-1 back in")


def test_sigterm_drains_envoy_then_the_python_gateway_without_a_failed_request(fleet: LocalCluster) -> None:
    """Requests through Envoy to the Python gateway (statistics) in flight at SIGTERM are answered;
    afterwards connections are refused, and nothing of the gateway is left running."""
    answers: list[int] = []
    stopping = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10) as http:
            while not stopping.is_set():
                try:
                    answers.append(http.get(f"{fleet.gateway_url}/v2/models/simple/stats").status_code)
                except httpx.TransportError:
                    return  # refused, or closed between requests: the gateway has gone

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    (envoy,) = envoys_of(fleet.gateway.pid)
    fleet.gateway.signal(signal.SIGTERM)
    assert fleet.gateway.wait_or_kill(30) == 0
    stopping.set()
    for thread in threads:
        thread.join()
    assert answers and set(answers) == {200}
    assert not Path(f"/proc/{envoy}").exists() or zombie(envoy)
    fleet.gateway.start()
    fleet.wait_gateway_sees({"node-1", "node-2"}, 60)


def test_a_killed_gateway_takes_its_envoy_with_it(fleet: LocalCluster) -> None:
    (envoy,) = envoys_of(fleet.gateway.pid)
    os.kill(fleet.gateway.pid, signal.SIGKILL)
    fleet.gateway.wait_or_kill(10)
    wait_until(lambda: not Path(f"/proc/{envoy}").exists() or zombie(envoy), "envoy gone")


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def latency_body() -> dict[str, object]:
    return {"inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}


def wait_until(done: object, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)
