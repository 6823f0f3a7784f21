"""Node identity against a real health checker process: a node id belongs to the node that
registered it, and the node lists belong to holders of the cluster token."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tritonfleet.config import FleetConfig
from tritonfleet.health import status
from tritonfleet.net import free_port
from tritonfleet.processes import ServiceProcess, wait_http_ok

from .fakes import AUTH, TOKEN, beat_json

TTL_S = 1.5
SECRET = "X-Node-Secret"


class Checker:
    """A health checker process, and the calls the tests make to it."""

    def __init__(self, url: str, proc: ServiceProcess, log: Path) -> None:
        self.url, self.proc, self.log = url, proc, log

    def register(self, node_id: str, secret: str | None = None, **fields: Any) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/nodes/register", json=beat_json(node_id, **fields), headers=with_secret(secret)
        )

    def beat(self, node_id: str, secret: str | None, **fields: Any) -> httpx.Response:
        url = f"{self.url}/v1/nodes/{node_id}/heartbeat"
        return httpx.post(url, json=beat_json(node_id, **fields), headers=with_secret(secret))

    def delete(self, node_id: str, secret: str | None) -> httpx.Response:
        return httpx.delete(f"{self.url}/v1/nodes/{node_id}", headers=with_secret(secret))

    def nodes(self) -> dict[str, dict[str, Any]]:
        answer = httpx.get(f"{self.url}/v1/nodes", headers=AUTH)
        assert answer.status_code == 200
        return {node["node_id"]: node for node in answer.json()["nodes"]}


def with_secret(secret: str | None) -> dict[str, str]:
    return {**AUTH, SECRET: secret} if secret is not None else AUTH


def secret_of(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    secret = answer.json()["node_secret"]
    assert isinstance(secret, str) and len(secret) >= 32
    return secret


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Checker]:
    port, log = free_port(), tmp_path_factory.mktemp("health") / "health.log"
    env = {
        **os.environ,
        "TRITONFLEET_HEALTH_PORT": str(port),
        "TRITONFLEET_HEALTH_TTL_S": str(TTL_S),
        "TRITONFLEET_CLUSTER_TOKEN": TOKEN,
    }
    argv = [sys.executable, "-m", "tritonfleet", "health-checker"]
    proc = ServiceProcess("health-checker", argv, env, log)
    proc.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/healthz", 60, proc)
        yield Checker(url, proc, log)
    finally:
        proc.stop()


def test_one_nodes_secret_neither_refreshes_nor_removes_another_node(checker: Checker) -> None:
    """B's secret, or none, cannot heartbeat or delete A: 403, and A is listed unchanged."""
    a_secret = secret_of(checker.register("id-a", pending=1))
    b_secret = secret_of(checker.register("id-b"))
    assert a_secret != b_secret
    before = checker.nodes()["id-a"]
    for secret in (b_secret, None, "guess"):
        hijack = checker.beat("id-a", secret, manager_url="http://evil:1", pending=9)
        assert hijack.status_code == 403
        assert list(hijack.json()) == ["error"] and "secret" in hijack.json()["error"]
        assert checker.delete("id-a", secret).status_code == 403
    after = checker.nodes()["id-a"]
    assert {**after, "last_heartbeat_age_s": 0} == {**before, "last_heartbeat_age_s": 0}
    assert checker.beat("id-a", a_secret, pending=2).status_code == 200
    assert checker.nodes()["id-a"]["pending"] == 2
    refusals = checker.log.read_text()
    assert "refused a node's heartbeat or deregistration without its secret" in refusals
    assert b_secret not in refusals and a_secret not in refusals


def test_a_heartbeat_for_an_unknown_node_is_404_and_does_not_add_it(checker: Checker) -> None:
    answer = checker.beat("id-unknown", None)
    assert answer.status_code == 404
    assert "register" in answer.json()["error"]
    assert "id-unknown" not in checker.nodes()


def test_a_live_nodes_id_is_registered_again_only_with_its_secret(checker: Checker) -> None:
    """Without the secret 409, and the node is untouched; with it, a refresh with the same secret."""
    secret = secret_of(checker.register("id-c", pending=3))
    taken = checker.register("id-c", manager_url="http://evil:1")
    assert taken.status_code == 409
    assert list(taken.json()) == ["error"]
    assert checker.register("id-c", "wrong").status_code == 409
    assert checker.nodes()["id-c"]["manager_url"] == "http://id-c.mgr:9000"
    assert secret_of(checker.register("id-c", secret, pending=4)) == secret
    assert checker.nodes()["id-c"]["pending"] == 4


def test_a_deregistered_id_is_free_and_its_old_secret_is_void(checker: Checker) -> None:
    old = secret_of(checker.register("id-d"))
    assert checker.delete("id-d", old).status_code == 204
    assert "id-d" not in checker.nodes()
    new = secret_of(checker.register("id-d"))
    assert new != old
    assert checker.beat("id-d", old).status_code == 403
    assert checker.beat("id-d", new).status_code == 200


def test_an_expired_id_is_free(checker: Checker) -> None:
    """A node that crashed and restarted registers again once its old record's TTL has passed."""
    secret_of(checker.register("id-e"))
    assert checker.register("id-e").status_code == 409
    time.sleep(TTL_S + 0.3)
    secret_of(checker.register("id-e"))


def test_deleting_an_unknown_id_needs_only_the_token(checker: Checker) -> None:
    assert checker.delete("id-never", None).status_code == 204
    assert httpx.delete(f"{checker.url}/v1/nodes/id-never").status_code == 401


@pytest.mark.parametrize("path", ["/v1/nodes", "/v1/nodes/watch?since=0&timeout_s=0"])
def test_node_lists_need_the_cluster_token(checker: Checker, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        refused = httpx.get(checker.url + path, headers=headers)
        assert refused.status_code == 401
        assert refused.json() == {"error": "missing or wrong cluster token"}
    assert httpx.get(checker.url + path, headers=AUTH).status_code == 200


def test_healthz_and_metrics_stay_open(checker: Checker) -> None:
    assert httpx.get(f"{checker.url}/healthz").status_code == 200
    assert httpx.get(f"{checker.url}/metrics").status_code == 200


def test_status_lists_the_nodes_with_the_cluster_token(
    checker: Checker, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_of(checker.register("id-status"))
    answers = []
    for token in (TOKEN, "wrong"):
        config = FleetConfig.model_validate({"cluster": {"token": token, "health_urls": [checker.url]}})
        answers.append((status.serve(config), capsys.readouterr()))
    (ok, listed), (failed, refused) = answers
    assert ok == 0 and "id-status" in listed.out
    assert failed == 1 and "401" in refused.err
