"""The gateway's access log in a file of its own: a line for each request, there and not in the
gateway's own log, from the Python gateway or from Envoy's fast path; the file rolled over at
its size, Envoy writing to the new one."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.cluster import DATA_PLANES, cluster, simple_body


def lines(path: Path) -> list[dict[str, object]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("data_plane", DATA_PLANES)
def test_the_gateway_writes_a_line_a_request_to_the_access_log_file_and_rolls_it_over(
    tmp_path: Path, data_plane: str
) -> None:
    access = tmp_path / "access" / "gateway-access.log"
    local = cluster(
        tmp_path,
        {"node-1": ["simple"]},
        gateway={
            "data_plane": data_plane,
            "access_log": "all",
            "access_log_file": str(access),
            # A few dozen lines a file.
            "access_log_max_bytes": 8192,
            "access_log_backups": 2,
        },
    )
    try:
        local.start()
        with httpx.Client(base_url=local.gateway_url) as client:
            for i in range(3):
                answer = client.post(
                    "/v2/models/simple/infer", json=simple_body(i), headers={"X-Request-ID": f"access-{i}"}
                )
                assert answer.status_code == 200, answer.text
            wait_for(lambda: {"access-0", "access-1", "access-2"} <= logged(access), access)
            for i in range(200):
                assert client.post("/v2/models/simple/infer", json=simple_body(i)).status_code == 200
            rotated = access.with_name(access.name + ".1")
            wait_for(rotated.exists, access)
            assert client.post(
                "/v2/models/simple/infer", json=simple_body(1), headers={"X-Request-ID": "after"}
            ).is_success
            wait_for(lambda: "after" in logged(access), access)
    finally:
        local.stop()
    line = next(
        line for line in lines(tmp_path.glob("access/*.log.*").__next__()) if line["route"] == "infer"
    )
    logger = "envoy.access" if data_plane == "envoy" else "tritonfleet.access"
    assert (line["msg"], line["logger"], line["service"]) == ("request", logger, "gateway")
    assert (line["model"], line["status"], line["node"]) == ("simple", 200, "node-1")
    assert not access.with_name(access.name + ".3").exists(), "two backups kept"
    assert "access-0" not in local.gateway.log_path.read_text(), "not in the gateway's own log"


def logged(path: Path) -> set[object]:
    return {line["request_id"] for line in lines(path) if line["route"] == "infer"}


def wait_for(done: object, path: Path, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, lines(path)[-5:]
        time.sleep(0.05)
