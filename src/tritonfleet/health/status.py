"""`tritonfleet status`: the cluster's nodes as a table, from the first health checker that answers."""

from __future__ import annotations

import sys

import httpx

from tritonfleet.config import FleetConfig
from tritonfleet.protocol import NodeList, NodeView

COLUMNS = ("NODE", "ADDRESS", "STATE", "HEALTH", "MODELS", "IN-FLIGHT", "PENDING", "HEARTBEAT")


def row(node: NodeView) -> tuple[str, ...]:
    models = ",".join(f"{m.name}:{m.version}" for m in node.models) or "-"
    return (
        node.node_id,
        node.triton_http_url,
        node.state.value,
        node.health.value,
        models,
        str(node.in_flight),
        str(node.pending),
        f"{node.last_heartbeat_age_s:.1f}s ago",
    )


def table(nodes: list[NodeView]) -> str:
    rows = [COLUMNS, *(row(node) for node in sorted(nodes, key=lambda n: n.node_id))]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def serve(config: FleetConfig) -> int:
    """Raises ConfigError without a cluster token: the checkers list nodes to its holders only."""
    headers = {"Authorization": f"Bearer {config.cluster.read_token()}"}
    errors = []
    for url in config.cluster.health_urls:
        try:
            answer = httpx.get(f"{url}/v1/nodes", headers=headers, timeout=3.0)
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            errors.append(f"{url}: {exc}")
            continue
        nodes = NodeList.model_validate_json(answer.content).nodes
        print(table(nodes) if nodes else f"no nodes registered at {url}")
        return 0
    print("no health checker answered:\n  " + "\n  ".join(errors), file=sys.stderr)
    return 1
