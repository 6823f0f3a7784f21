"""The node's state machine, back-off and names: pure functions."""

from __future__ import annotations

import pytest

from tritonfleet.node.backoff import Backoff
from tritonfleet.node.endpoints import TritonPorts, TritonUrls, node_id, public_host
from tritonfleet.node.state import NodeEvent, transition
from tritonfleet.protocol import Heartbeat, NodeState

STARTING, READY, DRAINING = NodeState.STARTING, NodeState.READY, NodeState.DRAINING


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [
        (STARTING, NodeEvent.TRITON_READY, READY),
        (READY, NodeEvent.TRITON_DOWN, STARTING),
        (STARTING, NodeEvent.TRITON_DOWN, STARTING),
        (READY, NodeEvent.DRAIN, DRAINING),
        (DRAINING, NodeEvent.TRITON_READY, DRAINING),
        (DRAINING, NodeEvent.TRITON_DOWN, DRAINING),
    ],
)
def test_transition(state: NodeState, event: NodeEvent, expected: NodeState) -> None:
    """Ready exactly while Triton is, until draining, which nothing leaves."""
    assert transition(state, event) is expected


def test_backoff_doubles_from_base_up_to_max() -> None:
    """0.5 s, 1 s, 2 s, 4 s, then capped at 5 s."""
    backoff = Backoff(base_s=0.5, max_s=5.0)
    assert [backoff.delay_s(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_node_id_is_configured_or_host_and_port() -> None:
    """A configured id wins; otherwise `<hostname>-<port>`, with characters ids cannot hold replaced."""
    assert node_id("gpu-7", "host", 9000) == "gpu-7"
    assert node_id("", "box.example.com", 9000) == "box.example.com-9000"
    derived = node_id("", "my box/1", 9000)
    assert derived == "my-box-1-9000"
    Heartbeat(node_id=derived, manager_url="http://x", triton_http_url="http://y")


def test_public_host_prefers_advertised_then_bound_then_hostname() -> None:
    """A wildcard bind address is never announced: the machine's name is."""
    assert public_host("node.example.com", "0.0.0.0", "box") == "node.example.com"
    assert public_host("", "10.0.0.5", "box") == "10.0.0.5"
    assert public_host("", "0.0.0.0", "box") == "box"


def test_ports_pick_only_replaces_zeros() -> None:
    """Fixed ports stay; each 0 becomes a distinct free port."""
    picked = TritonPorts(8000, 0, 0).pick("127.0.0.1")
    assert picked.http == 8000 and picked.fixed
    assert 0 not in (picked.grpc, picked.metrics) and picked.grpc != picked.metrics
    assert not TritonPorts(8000, 0, 8002).fixed


def test_triton_urls_name_http_grpc_and_the_metrics_endpoint() -> None:
    """The metrics URL is the full Prometheus endpoint; gRPC is a grpc:// URL."""
    assert TritonUrls.on("h", TritonPorts(1, 2, 3)) == TritonUrls(
        "http://h:1", "grpc://h:2", "http://h:3/metrics"
    )
