"""A fake cluster behind httpx.MockTransport: gateway, health checker and token manager."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from tests.e2e.cluster import fleet_config
from tritonfleet.config import FleetConfig

GATEWAY = "http://gateway.test"
HEALTH = "http://health.test"
TOKEN_MANAGER = "http://tm.test"
KEY = "tf_good-key"
CLUSTER_TOKEN = "web-cluster-token"
ACCOUNT = "0x00000000000000000000000000000000000000aa"

SD_METADATA = {
    "name": "sd",
    "versions": ["1"],
    "platform": "python",
    "inputs": [
        {"name": name, "datatype": datatype, "shape": [1]}
        for name, datatype in (
            ("PROMPT", "BYTES"),
            ("SAMPLES", "INT32"),
            ("STEPS", "INT32"),
            ("GUIDANCE_SCALE", "FP32"),
            ("SEED", "INT64"),
        )
    ],
    "outputs": [{"name": "IMAGES", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}],
}
DIGITS_METADATA = {
    "name": "digits",
    "versions": ["1"],
    "platform": "python",
    "inputs": [{"name": "IMAGE", "datatype": "FP32", "shape": [-1, 8, 8]}],
    "outputs": [
        {"name": "PROBABILITIES", "datatype": "FP32", "shape": [-1, 10]},
        {"name": "LABEL", "datatype": "INT64", "shape": [-1, 1]},
    ],
}
NODE = {
    "node_id": "node-1",
    "manager_url": "http://manager.test",
    "triton_http_url": "http://triton.test",
    "triton_metrics_url": "http://triton.test/metrics",
    "models": [{"name": "sd", "version": "1"}],
    "state": "ready",
    "health": "healthy",
    "last_heartbeat_age_s": 0.2,
}


def config(tmp_path: Any) -> FleetConfig:
    return fleet_config(
        tmp_path,
        cluster={"health_urls": [HEALTH], "token": CLUSTER_TOKEN},
        web={"gateway_url": GATEWAY, "token_manager_url": TOKEN_MANAGER, "max_body_bytes": 10_000},
        payments={"enabled": True},
    )


def binary(outputs: list[tuple[str, str, np.ndarray]], headers: dict[str, str]) -> httpx.Response:
    header = {
        "outputs": [
            {"name": n, "datatype": d, "shape": list(a.shape), "parameters": {"binary_data_size": a.nbytes}}
            for n, d, a in outputs
        ]
    }
    head = json.dumps(header).encode()
    body = head + b"".join(a.tobytes() for *_, a in outputs)
    return httpx.Response(
        200, content=body, headers={**headers, "Inference-Header-Content-Length": str(len(head))}
    )


def health_checker(request: httpx.Request) -> httpx.Response:
    """Lists NODE to holders of the cluster token, as the real one does."""
    if request.headers.get("Authorization") != f"Bearer {CLUSTER_TOKEN}":
        return httpx.Response(401, json={"error": "missing or wrong cluster token"})
    return httpx.Response(200, json={"version": 1, "nodes": [NODE]})


@dataclass
class FakeCluster:
    """Answers like the real services; flags make them fail the ways the tests need."""

    gateway_down: bool = False
    models: list[str] = field(default_factory=lambda: ["digits", "sd"])
    credit: int = 100
    infer_requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == "gateway.test":
            if self.gateway_down:
                raise httpx.ConnectError("connection refused", request=request)
            return self.gateway(request)
        if host == "health.test":
            return health_checker(request)
        if host == "tm.test":
            return self.token_manager(request)
        if host == "manager.test" or request.url.path.startswith("/v2/health"):
            return httpx.Response(200)
        return httpx.Response(200, text="")

    def gateway(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/healthz":
            return httpx.Response(200)
        if path == "/v2/repository/index":
            return httpx.Response(
                200, json=[{"name": m, "version": "1", "state": "READY"} for m in self.models]
            )
        metadata = {"sd": SD_METADATA, "digits": DIGITS_METADATA}
        name = path.split("/")[3]
        if name not in self.models:
            return httpx.Response(404, json={"error": f"Request for unknown model: '{name}' is not found"})
        if request.method == "GET":
            return httpx.Response(200, json=metadata[name])
        self.infer_requests.append(request)
        return self.infer(name, request)

    def infer(self, name: str, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return httpx.Response(401, json={"error": "an API key is required"})
        price = 50 if name == "sd" else 2
        if self.credit < price:
            body = {"error": "insufficient credit", "price": price, "available": self.credit, "missing": 1}
            return httpx.Response(402, json=body)
        self.credit -= price
        headers = {
            "X-Tritonfleet-Node": "node-1",
            "X-Tritonfleet-Charge": str(price),
            "X-Tritonfleet-Credit-Remaining": str(self.credit),
            "X-Request-ID": "req-1",
        }
        if name == "sd":
            samples = json.loads(request.content)["inputs"][1]["data"][0]
            return binary([("IMAGES", "UINT8", np.zeros((samples, 8, 8, 3), np.uint8))], headers)
        probabilities = np.eye(10, dtype=np.float32)[[3]]
        return binary(
            [("PROBABILITIES", "FP32", probabilities), ("LABEL", "INT64", np.array([[3]], np.int64))], headers
        )

    def token_manager(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/auth") or request.url.path in ("/v1/prices", "/v1/faucet"):
            return httpx.Response(
                200, json={"path": request.url.path, "body": json.loads(request.content or b"{}")}
            )
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return httpx.Response(401, json={"error": "invalid API key"})
        answers = {
            "/v1/balance": {"account": ACCOUNT, "deposit": 100, "unsettled": 2, "available": 98},
            "/v1/usage": {
                "account": ACCOUNT,
                "charges": [{"model": "digits", "amount": 2}],
                "next_before": None,
            },
            "/v1/settlements": {"account": ACCOUNT, "settlements": []},
        }
        return httpx.Response(200, json=answers[request.url.path])
