"""Triton's generate extension through the gateway, on both data planes: `generate` answers as
a node answers, `generate_stream` is relayed event by event as the node sends it, and a long
answer of any route is relayed as it comes rather than held whole."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.cluster import DATA_PLANES, cluster
from tritonfleet.up.cluster import LocalCluster

MODEL = "text_generation"


@pytest.fixture(scope="module", params=DATA_PLANES)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = cluster(
        tmp_path_factory.mktemp("generate"),
        {"node-1": [MODEL, "simple_identity", "bulk"], "node-2": [MODEL, "simple_identity", "bulk"]},
        gateway={"data_plane": request.param},
    )
    try:
        local.start()
        yield local
    finally:
        local.stop()


def node_url(fleet: LocalCluster) -> str:
    nodes = httpx.get(f"{fleet.health_url}/v1/nodes", headers=fleet.cluster_auth).json()["nodes"]
    return str(nodes[0]["triton_http_url"])


def events(base: str, path: str, body: dict[str, object]) -> tuple[httpx.Headers, list[tuple[float, dict]]]:
    """The answer's headers and its SSE events, each with when it arrived."""
    arrived = []
    with httpx.stream("POST", f"{base}{path}", json=body, timeout=30) as answer:
        assert answer.status_code == 200, answer.read()
        for line in answer.iter_lines():
            if line.startswith("data: "):
                arrived.append((time.monotonic(), json.loads(line.removeprefix("data: "))))
        return answer.headers, arrived


def test_generate_answers_what_a_node_answers(fleet: LocalCluster) -> None:
    body = {"text_input": "the fleet", "max_tokens": 8}
    direct = httpx.post(f"{node_url(fleet)}/v2/models/{MODEL}/generate", json=body)
    for path in (f"/v2/models/{MODEL}/generate", f"/v2/models/{MODEL}/versions/1/generate"):
        through = httpx.post(f"{fleet.gateway_url}{path}", json=body, timeout=30)
        assert through.status_code == 200, through.text
        assert through.json() == direct.json()
        assert through.headers["X-Tritonfleet-Node"] in ("node-1", "node-2")
        assert through.headers["X-Request-ID"]


def test_generate_stream_relays_each_event_as_the_node_sends_it(fleet: LocalCluster) -> None:
    body = {"text_input": "hi", "max_tokens": 5, "stream": True, "parameters": {"token_interval_ms": 150}}
    _, direct = events(node_url(fleet), f"/v2/models/{MODEL}/generate_stream", body)
    headers, through = events(fleet.gateway_url, f"/v2/models/{MODEL}/generate_stream", body)
    assert [event for _, event in through] == [event for _, event in direct]
    assert len(through) == 5
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["X-Tritonfleet-Node"] in ("node-1", "node-2")
    # Four 150 ms intervals lie between the first token and the last: an answer held whole
    # until its end would bring all five at once.
    assert through[-1][0] - through[0][0] >= 0.4


def test_generate_of_an_unknown_model_answers_as_triton(fleet: LocalCluster) -> None:
    for route in ("generate", "generate_stream"):
        answer = httpx.post(f"{fleet.gateway_url}/v2/models/nope/{route}", json={"text_input": "x"})
        assert answer.status_code == 404
        assert answer.json() == {"error": "Request for unknown model: 'nope' is not found"}


def test_a_bad_generate_request_gets_the_nodes_refusal(fleet: LocalCluster) -> None:
    answer = httpx.post(f"{fleet.gateway_url}/v2/models/{MODEL}/generate", json={"max_tokens": 4})
    assert answer.status_code == 400 and "text_input" in answer.json()["error"], answer.text


def test_a_long_answer_is_relayed_whole_and_unchanged(fleet: LocalCluster) -> None:
    """An answer over the size the gateway reads whole (proxy.WHOLE_ANSWER_BYTES) is relayed as
    it comes: it arrives complete, byte for byte what the node sends."""
    text = "0123456789abcdef" * (3 * 2**20 // 16)
    body = {"inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "BYTES", "data": [text]}]}
    direct = httpx.post(f"{node_url(fleet)}/v2/models/simple_identity/infer", json=body, timeout=60)
    through = httpx.post(f"{fleet.gateway_url}/v2/models/simple_identity/infer", json=body, timeout=60)
    assert direct.status_code == 200, direct.text[:300]
    assert through.status_code == 200 and len(through.content) > 3 * 2**20
    assert through.content == direct.content


def test_a_64_mib_answer_costs_the_gateway_no_64_mib_of_memory(fleet: LocalCluster) -> None:
    """The peak resident memory of the gateway's processes (Envoy's too, on its plane), reset
    before (Linux's clear_refs), grows by a fraction of the answer while one passes through."""
    size = 64 * 2**20
    body = {
        "inputs": [{"name": "BYTES_OUT", "shape": [1], "datatype": "INT32", "data": [size]}],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
    }
    pids = [fleet.gateway.pid, *children(fleet.gateway.pid)]
    before = {pid: reset_peak_memory(pid) for pid in pids}
    received = 0
    url = f"{fleet.gateway_url}/v2/models/bulk/infer"
    # Not compressed (httpx asks for gzip by default, and zeros shrink to nothing).
    with httpx.stream("POST", url, json=body, headers={"Accept-Encoding": "identity"}, timeout=60) as answer:
        assert answer.status_code == 200, answer.read()[:300]
        for chunk in answer.iter_bytes():
            received += len(chunk)
    assert received > size
    grown = {pid: peak_memory(pid) - before[pid] for pid in pids}
    assert max(grown.values()) < size // 4, {pid: f"{n / 2**20:.1f} MiB" for pid, n in grown.items()}


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def reset_peak_memory(pid: int) -> int:
    """Resets the process's peak resident memory to its current one (`5` to clear_refs); that."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_memory(pid)


def peak_memory(pid: int) -> int:
    """VmHWM: the most resident memory the process has had, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")
