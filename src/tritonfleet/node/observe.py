"""What Triton says about itself: readiness, the READY models, the pending requests.

The parsers are pure; TritonObserver is the one wrapper over the HTTP reads they need.
"""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tritonfleet.node.errors import TritonQueryError
from tritonfleet.protocol import ModelRef
from tritonfleet.triton_admin import ADMIN_HEADER

PENDING_METRIC = "nv_inference_pending_request_count"


def ready_models(index: Any) -> list[ModelRef]:
    """The READY entries of `POST /v2/repository/index`, sorted."""
    if not isinstance(index, list):
        raise ValueError(f"repository index is not a list: {index!r:.200}")
    found = {
        ModelRef(name=entry["name"], version=str(entry["version"]))
        for entry in index
        if isinstance(entry, dict) and entry.get("state") == "READY" and entry.get("version")
    }
    return sorted(found, key=lambda ref: (ref.name, ref.version))


def pending_requests(metrics_text: str) -> int:
    """`nv_inference_pending_request_count` summed over every model and version."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name == PENDING_METRIC:
            total += sum(sample.value for sample in family.samples)
    return int(total)


class TritonObserver:
    """Reads a Triton's state over HTTP; failures come out as TritonQueryError."""

    def __init__(self, client: httpx.AsyncClient, admin_key: str = "", timeout_s: float = 2.0) -> None:
        self.client = client
        self.timeout_s = timeout_s
        # The repository index is one of Triton's restricted APIs (tritonfleet.triton_admin).
        self._admin_headers = {ADMIN_HEADER: admin_key} if admin_key else {}

    async def ready(self, http_url: str) -> bool:
        try:
            answer = await self.client.get(f"{http_url}/v2/health/ready", timeout=self.timeout_s)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    async def models(self, http_url: str) -> list[ModelRef]:
        try:
            answer = await self.client.post(
                f"{http_url}/v2/repository/index", headers=self._admin_headers, timeout=self.timeout_s
            )
            answer.raise_for_status()
            return ready_models(answer.json())
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise TritonQueryError(f"repository index of {http_url}: {exc!r}") from exc

    async def pending(self, metrics_url: str) -> int:
        """From the Prometheus endpoint, `http://host:8002/metrics` say."""
        try:
            answer = await self.client.get(metrics_url, timeout=self.timeout_s)
            answer.raise_for_status()
            return pending_requests(answer.text)
        except (httpx.HTTPError, ValueError) as exc:
            raise TritonQueryError(f"metrics of {metrics_url}: {exc!r}") from exc
