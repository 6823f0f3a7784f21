"""Cluster-wide answers built from every node's own: repository index and model statistics."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp
from multidict import CIMultiDict

from tritonfleet.protocol import NodeView
from tritonfleet.proxy import UpstreamError, exchange
from tritonfleet.triton_admin import ADMIN_HEADER

log = logging.getLogger(__name__)

# What Triton reports for one model version, summed over nodes.
_STATS_COUNTERS = ("inference_count", "execution_count")


async def fan_out(
    session: aiohttp.ClientSession,
    nodes: Iterable[NodeView],
    method: str,
    path: str,
    body: bytes,
    timeout_s: float,
    admin_key: str,
) -> list[Any]:
    """Each reachable node's JSON answer to one request; nodes that fail are logged and skipped.
    `admin_key` opens Triton's restricted APIs (the repository index is one)."""

    async def ask(node: NodeView) -> Any:
        headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json", ADMIN_HEADER: admin_key})
        try:
            reply = await exchange(session, method, node.triton_http_url + path, body, headers, timeout_s)
        except UpstreamError as exc:
            log.warning("node did not answer", extra={"node": node.node_id, "path": path, "error": str(exc)})
            return None
        if reply.status != 200:
            return None
        return json.loads(reply.body)

    answers = await asyncio.gather(*(ask(node) for node in nodes))
    return [answer for answer in answers if answer is not None]


def merge_index(indexes: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One entry per model version; READY when any node has it READY."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for index in indexes:
        for entry in index:
            key = (entry.get("name", ""), entry.get("version", ""))
            if key not in merged or entry.get("state") == "READY":
                merged[key] = entry
    return [merged[key] for key in sorted(merged)]


def merge_stats(answers: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Triton's `model_stats` summed over nodes: counts and nanoseconds add, the latest wins."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for answer in answers:
        for stats in answer.get("model_stats", []):
            key = (stats["name"], stats["version"])
            if key not in merged:
                merged[key] = copy.deepcopy(stats)
            else:
                _add_stats(merged[key], stats)
    return {"model_stats": [merged[key] for key in sorted(merged)]}


def _add_stats(total: dict[str, Any], stats: dict[str, Any]) -> None:
    total["last_inference"] = max(total.get("last_inference", 0), stats.get("last_inference", 0))
    for name in _STATS_COUNTERS:
        total[name] = total.get(name, 0) + stats.get(name, 0)
    for section in ("inference_stats", "response_stats"):
        _add_durations(total.setdefault(section, {}), stats.get(section, {}))
    by_size = {batch["batch_size"]: batch for batch in total.setdefault("batch_stats", [])}
    for batch in stats.get("batch_stats", []):
        if batch["batch_size"] in by_size:
            _add_durations(by_size[batch["batch_size"]], batch)
        else:
            total["batch_stats"].append(batch)


def _add_durations(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Adds `{"count": n, "ns": t}` leaves found at any depth."""
    for name, value in part.items():
        if isinstance(value, dict):
            _add_durations(total.setdefault(name, {}), value)
        elif isinstance(value, int) and name != "batch_size":
            total[name] = total.get(name, 0) + value
