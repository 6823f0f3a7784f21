"""The web backend against a fake cluster (httpx.MockTransport): statuses, messages, shapes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.web.fakes import ACCOUNT, KEY, FakeCluster, config
from tritonfleet.web.command import create_app

AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPT = {"prompt": "a lighthouse", "steps": 4, "seed": 7}


@pytest.fixture
def fake() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def client(tmp_path: Path, fake: FakeCluster) -> Iterator[TestClient]:
    with TestClient(create_app(config(tmp_path), httpx.MockTransport(fake))) as test_client:
        yield test_client


def test_generate_returns_the_images_the_node_and_the_cost(client: TestClient, fake: FakeCluster) -> None:
    answer = client.post("/api/generate", json={**PROMPT, "samples": 2}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "sd" and body["seed"] == 7 and body["node"] == "node-1"
    assert body["charge"] == 50 and body["credit_remaining"] == 50 and "latency_ms" in body
    assert len(body["images"]) == 2 and body["images"][0].startswith("data:image/png;base64,")
    assert fake.infer_requests[0].headers["Authorization"] == AUTH["Authorization"]


def test_a_text_to_image_model_learns_a_time_per_step_for_the_progress_bar(client: TestClient) -> None:
    assert client.get("/api/generate/models").json()["models"] == [{"name": "sd", "per_step_s": None}]
    client.post("/api/generate", json=PROMPT, headers=AUTH)
    (model,) = client.get("/api/generate/models").json()["models"]
    assert model["per_step_s"] is not None and model["per_step_s"] > 0


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"prompt": ""}, "the prompt is empty"),
        ({"steps": 0}, "steps must be between 1 and 150"),
        ({"steps": 1000}, "steps must be between 1 and 150"),
        ({"prompt": "x" * 5000}, "the prompt is too long"),
        ({"steps": "many"}, "steps: Input should be a valid integer"),
    ],
)
def test_bad_generate_input_is_a_422_with_a_message_and_never_reaches_the_gateway(
    client: TestClient, fake: FakeCluster, change: dict[str, object], says: str
) -> None:
    answer = client.post("/api/generate", json={**PROMPT, **change}, headers=AUTH)
    assert answer.status_code == 422 and says in answer.json()["error"]
    assert fake.infer_requests == []


def test_a_body_over_the_limit_is_a_413(client: TestClient) -> None:
    answer = client.post("/api/models/digits/infer", json={"inputs": {"IMAGE": [0.0] * 5000}}, headers=AUTH)
    assert answer.status_code == 413 and "at most 10000 bytes" in answer.json()["error"]


def test_a_gateway_that_does_not_answer_is_a_502_naming_it(client: TestClient, fake: FakeCluster) -> None:
    fake.gateway_down = True
    answer = client.post("/api/generate", json=PROMPT, headers=AUTH)
    assert answer.status_code == 502
    assert "the gateway at http://gateway.test is not answering" in answer.json()["error"]


def test_no_credit_is_a_402_with_the_gateways_figures_and_a_wallet_link(
    client: TestClient, fake: FakeCluster
) -> None:
    fake.credit = 0
    answer = client.post("/api/generate", json=PROMPT, headers=AUTH)
    assert answer.status_code == 402
    body = answer.json()
    assert body["missing"] == 1 and body["wallet"] == "/wallet" and "Top up" in body["error"]


def test_no_key_is_a_401_pointing_at_the_wallet(client: TestClient) -> None:
    answer = client.post("/api/generate", json=PROMPT)
    assert answer.status_code == 401 and answer.json()["wallet"] == "/wallet"


def test_no_text_to_image_model_is_a_404_linking_to_how_to_add_one(
    client: TestClient, fake: FakeCluster
) -> None:
    fake.models = ["digits"]
    answer = client.post("/api/generate", json=PROMPT, headers=AUTH)
    assert answer.status_code == 404 and answer.json()["help"] == "/help/text-to-image"
    assert client.get("/api/generate/models").json()["models"] == []
    assert client.get("/help/text-to-image").status_code == 200


def test_the_playground_lists_models_with_metadata_and_runs_a_drawing(client: TestClient) -> None:
    listed = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    assert listed["sd"]["text_to_image"] and listed["digits"]["inputs"][0]["shape"] == [-1, 8, 8]
    drawing = [[0.0] * 8 for _ in range(8)]
    answer = client.post("/api/models/digits/infer", json={"inputs": {"IMAGE": drawing}}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["LABEL"]["rows"] == [[3]] and outputs["PROBABILITIES"]["kind"] == "table"


def test_the_playground_refuses_unknown_inputs_and_unknown_models(client: TestClient) -> None:
    unknown_input = client.post("/api/models/digits/infer", json={"inputs": {"PIXELS": 1}}, headers=AUTH)
    assert unknown_input.status_code == 422 and "no input named PIXELS" in unknown_input.json()["error"]
    missing = client.post("/api/models/digits/infer", json={"inputs": {}}, headers=AUTH)
    assert missing.status_code == 422 and "give a value for IMAGE" in missing.json()["error"]
    assert client.post("/api/models/nope/infer", json={"inputs": {}}).status_code == 404


def test_the_wallet_summary_needs_a_key_and_gathers_balance_usage_and_settlements(client: TestClient) -> None:
    assert client.get("/api/wallet/summary").status_code == 401
    assert client.get("/api/wallet/summary", headers={"Authorization": "Bearer tf_bad"}).status_code == 401
    summary = client.get("/api/wallet/summary", headers=AUTH).json()
    assert summary["account"] == ACCOUNT and summary["balance"]["available"] == 98
    assert summary["usage"] == [{"model": "digits", "amount": 2}] and summary["settlements"] == []


def test_the_faucet_deposits_to_the_keys_account_within_limits(client: TestClient) -> None:
    answer = client.post("/api/wallet/faucet", json={"amount": 500}, headers=AUTH)
    assert answer.json()["body"] == {"address": ACCOUNT, "amount": 500}
    too_much = client.post("/api/wallet/faucet", json={"amount": 10**9}, headers=AUTH)
    assert too_much.status_code == 422 and "between 1 and" in too_much.json()["error"]


def test_the_pages_and_their_assets_are_served_from_the_package(client: TestClient) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/generate"
    for page in ("generate", "playground", "cluster", "wallet"):
        html = client.get(f"/{page}")
        assert html.status_code == 200 and f"/static/{page}.js" in html.text
        assert "http" not in html.text.split("<main>")[0], "no asset from outside"
        assert client.get(f"/static/{page}.js").status_code == 200


def test_the_cluster_snapshot_shows_the_health_checkers_nodes(client: TestClient) -> None:
    deadline = time.monotonic() + 5
    while not (snapshot := client.get("/api/cluster").json())["nodes"]:
        assert time.monotonic() < deadline, "the monitor never looked"
        time.sleep(0.05)
    (node,) = snapshot["nodes"]
    assert node["node_id"] == "node-1" and node["status"] == "up" and snapshot["gateway_up"] is True
