"""What Triton says about itself: readiness, the READY models, the pending requests.

The parsers are pure; TritonObserver is the one wrapper over the HTTP reads they need.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tritonfleet.node.errors import TritonQueryError
from tritonfleet.protocol import ModelRef
from tritonfleet.triton_admin import ADMIN_HEADER

log = logging.getLogger(__name__)

PENDING_METRIC = "nv_inference_pending_request_count"
# Triton's default `max_sequence_idle_microseconds`, for a sequence batcher that sets none.
DEFAULT_SEQUENCE_IDLE_S = 1.0


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


def with_sequence(ref: ModelRef, config: Any) -> ModelRef:
    """The model version as its config (`GET /v2/models/{m}/versions/{v}/config`) describes it:
    stateful when the config has a `sequence_batching` section."""
    if not isinstance(config, dict):
        raise ValueError(f"model config is not an object: {config!r:.200}")
    batching = config.get("sequence_batching")
    if not isinstance(batching, dict):
        return ref
    idle_us = int(batching.get("max_sequence_idle_microseconds") or 0)
    idle_s = idle_us / 1e6 if idle_us > 0 else DEFAULT_SEQUENCE_IDLE_S
    return ref.model_copy(update={"sequence": True, "sequence_idle_s": idle_s})


def pending_requests(metrics_text: str) -> int:
    """`nv_inference_pending_request_count` summed over every model and version."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name == PENDING_METRIC:
            total += sum(sample.value for sample in family.samples)
    return int(total)


class TritonObserver:
    """Reads a Triton's state over HTTP; failures come out as TritonQueryError.

    Each READY model version's config is read once, when it first appears in the index, to
    learn whether it is stateful (`with_sequence`): the gateway must know before the model's
    first request (the Envoy plane builds its routes from it), and the manager is the one place
    that sees a model become READY. One GET per new model version, none on any request's path.
    A version whose config cannot be read is left out of the READY list until it can: announced
    stateless by mistake, its sequences would be split without a word.
    """

    def __init__(self, client: httpx.AsyncClient, admin_key: str = "", timeout_s: float = 2.0) -> None:
        self.client = client
        self.timeout_s = timeout_s
        # The repository index is one of Triton's restricted APIs (tritonfleet.triton_admin).
        self._admin_headers = {ADMIN_HEADER: admin_key} if admin_key else {}
        # Read configs, by model version; a version that leaves the index is read again on return.
        self._described: dict[tuple[str, str], ModelRef] = {}

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
            ready = ready_models(answer.json())
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise TritonQueryError(f"repository index of {http_url}: {exc!r}") from exc
        return await self._described_models(http_url, ready)

    async def _described_models(self, http_url: str, ready: list[ModelRef]) -> list[ModelRef]:
        described = {}
        for ref in ready:
            key = (ref.name, ref.version)
            known = self._described.get(key)
            if known is None:
                try:
                    known = with_sequence(ref, await self._config(http_url, ref))
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning("cannot read a model's config", extra={"model": ref.name, "error": repr(exc)})
                    continue
            described[key] = known
        self._described = described
        return list(described.values())

    async def _config(self, http_url: str, ref: ModelRef) -> Any:
        path = f"/v2/models/{quote(ref.name, safe='')}/versions/{quote(ref.version, safe='')}/config"
        answer = await self.client.get(f"{http_url}{path}", timeout=self.timeout_s)
        answer.raise_for_status()
        return answer.json()

    async def pending(self, metrics_url: str) -> int:
        """From the Prometheus endpoint, `http://host:8002/metrics` say."""
        try:
            answer = await self.client.get(metrics_url, timeout=self.timeout_s)
            answer.raise_for_status()
            return pending_requests(answer.text)
        except (httpx.HTTPError, ValueError) as exc:
            raise TritonQueryError(f"metrics of {metrics_url}: {exc!r}") from exc
