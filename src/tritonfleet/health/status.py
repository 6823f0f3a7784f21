"""`tritonfleet status`: the cluster's nodes as a table, from the first health checker that answers."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import httpx

from tritonfleet.config import FleetConfig
from tritonfleet.net import trusting
from tritonfleet.protocol import GpuDevice, NodeList, NodeView

COLUMNS = ("NODE", "ADDRESS", "STATE", "HEALTH", "MODELS", "GPUS", "IN-FLIGHT", "PENDING", "HEARTBEAT")


def row(node: NodeView) -> tuple[str, ...]:
    models = ",".join(f"{m.name}:{m.version}" for m in node.models) or "-"
    return (
        node.node_id,
        node.triton_http_url,
        node.state.value,
        node.health.value,
        models,
        gpus(node.gpus),
        str(node.in_flight),
        str(node.pending),
        f"{node.last_heartbeat_age_s:.1f}s ago",
    )


def gpus(devices: list[GpuDevice]) -> str:
    """`2x NVIDIA H100 80GB HBM3 (80 GiB)`, a group per model and memory; `-` for none."""
    groups = Counter((gpu.name, gpu.memory_bytes) for gpu in devices)
    parts = [f"{n}x {name} ({memory / (1 << 30):.0f} GiB)" for (name, memory), n in groups.items()]
    return ", ".join(parts) or "-"


def table(nodes: list[NodeView]) -> str:
    rows = [COLUMNS, *(row(node) for node in sorted(nodes, key=lambda n: n.node_id))]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def gateway_line(config: FleetConfig, headers: dict[str, str]) -> str:
    gw = config.gateway
    host = "127.0.0.1" if gw.host in ("0.0.0.0", "::") else gw.host
    url = f"{'https' if gw.tls_cert_file else 'http'}://{host}:{gw.port}"
    return f"gateway {url}: {data_plane(url, gw.tls_cert_file, headers)}"


def data_plane(gateway_url: str, tls_cert_file: Path | None, headers: dict[str, str]) -> str:
    """The gateway's data plane in a few words: Envoy's release and state, and the nodes Envoy
    routes to; or the Python gateway's node view."""
    try:
        answer = httpx.get(
            f"{gateway_url}/v1/nodes", headers=headers, verify=trusting(tls_cert_file), timeout=3.0
        )
        answer.raise_for_status()
        view = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"no answer ({exc})"
    stale = (
        "; node view STALE: no health checker answers, routing on the last known nodes"
        if view.get("stale")
        else ""
    )
    envoy = view.get("envoy")
    if envoy is None:
        return f"python data plane, {len(view.get('nodes', []))} nodes in view{stale}"
    routed = ", ".join(envoy["routed"]) or "no node"
    return (
        f"envoy {envoy['version']} {envoy['state']}, routing to {routed} "
        f"(admin socket {envoy['admin']}){stale}"
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
        print(gateway_line(config, headers))
        return 0
    print("no health checker answered:\n  " + "\n  ".join(errors), file=sys.stderr)
    # The gateway still routes, on its last view: say what it is.
    print(gateway_line(config, headers))
    return 1
