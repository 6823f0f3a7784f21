"""The models the cluster serves, from the gateway's repository index and model metadata."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tritonfleet.web.errors import BadUpstream, NotFound, Refused
from tritonfleet.web.upstream import Upstream

# Metadata rarely changes; a short cache keeps a page's burst of calls to one fan-out.
CACHE_TTL_S = 2.0


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    # As Triton reports it: -1 for a variable dimension (the batch one included).
    shape: tuple[int, ...]

    def json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.outputs if spec.name == name), None)

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": list(self.versions),
            "platform": self.platform,
            "inputs": [spec.json() for spec in self.inputs],
            "outputs": [spec.json() for spec in self.outputs],
        }


def model_info(metadata: dict[str, Any]) -> ModelInfo:
    """Triton's `GET /v2/models/{m}` answer, validated enough to build a form from."""

    def specs(key: str) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(str(t["name"]), str(t["datatype"]), tuple(int(d) for d in t["shape"]))
            for t in metadata.get(key, [])
        )

    try:
        return ModelInfo(
            name=str(metadata["name"]),
            versions=tuple(str(v) for v in metadata.get("versions", [])),
            platform=str(metadata.get("platform", "")),
            inputs=specs("inputs"),
            outputs=specs("outputs"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadUpstream(f"the gateway's metadata of a model is malformed: {exc!r}") from exc


class Catalog:
    """Lists the ready models and their metadata, cached for a moment."""

    def __init__(
        self, gateway: Upstream, ttl_s: float = CACHE_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.gateway = gateway
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[str, tuple[float, ModelInfo]] = {}

    async def models(self) -> list[ModelInfo]:
        """Every model READY on some node, sorted by name."""
        index = await self.gateway.json("POST", "/v2/repository/index", json={"ready": True})
        names = sorted({str(entry["name"]) for entry in index if isinstance(entry, dict) and "name" in entry})
        found = await asyncio.gather(*(self._maybe(name) for name in names))
        return [info for info in found if info is not None]

    async def model(self, name: str) -> ModelInfo:
        cached = self._cache.get(name)
        if cached is not None and self.clock() - cached[0] < self.ttl_s:
            return cached[1]
        try:
            metadata = await self.gateway.json("GET", f"/v2/models/{quote(name, safe='')}")
        except Refused as exc:
            if exc.status in (400, 404, 503):
                raise NotFound(f"no node serves a model named '{name}' now") from exc
            raise
        info = model_info(metadata)
        self._cache[name] = (self.clock(), info)
        return info

    async def _maybe(self, name: str) -> ModelInfo | None:
        # A model that left between the index and its metadata is simply not listed.
        try:
            return await self.model(name)
        except NotFound:
            return None
