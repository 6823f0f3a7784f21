"""Clusters of the latency fixture (`models/_bench/latency`) for the scale-out, skew and failover
scenarios, and the balancers put in front of them: gateways on each scheduling policy and data
plane, nginx.

Each node gets its own model repository in a temp dir: a copy of the fixture's config.pbtxt with
the service time, instance count and name changed, and a link to its `1/model.py`. Dynamic
batching is off in the copies, so that one instance serves one request per service time: a node
then has a fixed capacity (instances * 1000 / service_time_ms requests/s), as a GPU-bound model
at batch size 1 has, and the figures measure how the load is spread rather than how big the
batches grow.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.overhead import Target, gateway_process, nginx
from tests.e2e.cluster import MODEL_DIRS, fleet_config
from tritonfleet.up.cluster import LocalCluster, NodeSpec

FIXTURE = MODEL_DIRS["latency"]
LATENCY_BODY = json.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]},
    separators=(",", ":"),
)


def infer_path(model: str = "latency") -> str:
    return f"/v2/models/{model}/infer"


@dataclass(frozen=True)
class LatencyModel:
    """One copy of the fixture in a node's repository."""

    name: str = "latency"
    service_time_ms: float = 20.0
    instances: int = 1


def write_model(repository: Path, model: LatencyModel) -> None:
    config = (FIXTURE / "config.pbtxt").read_text()
    config = re.sub(r'^name: ".*"$', f'name: "{model.name}"', config, flags=re.M)
    config = re.sub(r"^dynamic_batching \{ \}\n", "", config, flags=re.M)
    config = re.sub(r"count: \d+", f"count: {model.instances}", config)
    config = re.sub(
        r'(key: "service_time_ms" value: \{ string_value: )"[^"]*"',
        rf'\1"{model.service_time_ms:g}"',
        config,
    )
    folder = repository / model.name
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(config)
    (folder / "1" / "model.py").symlink_to(FIXTURE / "1" / "model.py")


def latency_cluster(
    tmp: Path, nodes: Mapping[str, Sequence[LatencyModel]], **sections: dict[str, Any]
) -> LocalCluster:
    """A cluster (payments off) whose nodes each serve their own copies of the fixture."""
    specs = []
    for node_id, models in nodes.items():
        repository = tmp / "repos" / node_id
        repository.mkdir(parents=True)
        for model in models:
            write_model(repository, model)
        specs.append(NodeSpec(node_id, {"model_repository": str(repository)}))
    return LocalCluster(fleet_config(tmp, **python_data_plane(sections)), tmp / "state", specs)


def python_data_plane(sections: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The sections, with the gateway's Python data plane unless they choose: the scenarios that
    do not compare data planes yet measure the one their earlier figures were taken on."""
    gateway = {"data_plane": "python", **sections.get("gateway", {})}
    return {**sections, "gateway": gateway}


def start(fleet: LocalCluster, stack: contextlib.ExitStack, timeout_s: float = 300.0) -> None:
    """Start the cluster, and stop it with the stack (even when starting fails halfway)."""
    stack.callback(fleet.stop)
    began = time.monotonic()
    what = f"{len(fleet.nodes)} Triton node(s), health checker, scheduler and gateway"
    print(f"starting {what} ...", flush=True)
    fleet.start(timeout_s)
    print(f"  cluster up in {time.monotonic() - began:.0f} s", flush=True)


def triton_urls(fleet: LocalCluster) -> dict[str, str]:
    """{node_id: Triton's own HTTP URL}, from the health checker."""
    nodes = httpx.get(f"{fleet.health_url}/v1/nodes", headers=fleet.cluster_auth, timeout=5.0).json()["nodes"]
    return {node["node_id"]: node["triton_http_url"] for node in nodes}


def policy_gateway(
    fleet: LocalCluster, policy: str, model: str = "latency", name: str = "", env: Mapping[str, str] = {}
) -> contextlib.AbstractContextManager[Target]:
    """One more gateway of the cluster (named `name`, else after the policy), its embedded
    scheduler on `policy`, some of its environment changed (`ENVOY_PLANE`: the Envoy data plane);
    ready once `model` answers through it (and Envoy, if any, routes to every node)."""
    env = {**env, "TRITONFLEET_SCHEDULER_POLICY": policy}
    return gateway_process(fleet, name or policy, env, infer_path(model), LATENCY_BODY)


def nginx_balancer(
    name: str, upstreams: Sequence[str], method: str, model: str = "latency"
) -> contextlib.AbstractContextManager[Target]:
    """nginx (one worker, upstream keep-alive) balancing over Triton nodes with `method`
    (`least_conn;`, or "" for its weighted round robin); our child, stopped after."""
    return nginx(upstreams, method=method, name=name, ready_path=infer_path(model), ready_body=LATENCY_BODY)
