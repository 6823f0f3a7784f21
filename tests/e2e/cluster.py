"""Builds small real clusters for end-to-end tests: the `up` launcher on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tritonfleet.config import DataPlane, FleetConfig, load_config
from tritonfleet.net import free_port
from tritonfleet.up.cluster import LocalCluster, NodeSpec

MODELS = Path(__file__).resolve().parents[2] / "models"
MODEL_DIRS = {
    "simple": MODELS / "simple",
    "digits": MODELS / "digits",
    "countdown": MODELS / "countdown",
    "text_generation": MODELS / "text_generation",
    "simple_identity": MODELS / "simple_identity",
    "latency": MODELS / "_bench" / "latency",
    "bulk": MODELS / "_bench" / "bulk",
    "simple_sequence": MODELS / "simple_sequence",
    "simple_dyna_sequence": MODELS / "simple_dyna_sequence",
    "simple_string_dyna_sequence": MODELS / "simple_string_dyna_sequence",
}


# Both of the gateway's data planes, for the tests that must hold on each.
DATA_PLANES = [DataPlane.PYTHON.value, DataPlane.ENVOY.value]


def simple_body(value: int) -> dict[str, Any]:
    """A JSON infer body for `simple`: both inputs filled with `value`."""
    return {
        "inputs": [
            {"name": name, "shape": [1, 16], "datatype": "INT32", "data": [value] * 16}
            for name in ("INPUT0", "INPUT1")
        ]
    }


def repository(root: Path, models: Iterable[str]) -> Path:
    """A model repository holding links to some of the project's models."""
    root.mkdir(parents=True)
    for name in models:
        (root / name).symlink_to(MODEL_DIRS.get(name, MODELS / name), target_is_directory=True)
    return root


def paid_sections(tmp_path: Path, ledger_url: str = "") -> dict[str, dict[str, Any]]:
    """Payments on, with the chain, ledger and token manager of this test alone."""
    chain_port, token_manager_port = free_port(), free_port()
    return {
        "payments": {
            "enabled": True,
            "ledger_url": ledger_url or f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        },
        "token_manager": {"port": token_manager_port},
        "settler": {"interval_s": 1.0, "metrics_port": free_port()},
        "chain": {
            "port": chain_port,
            "rpc_url": f"http://127.0.0.1:{chain_port}",
            "state_file": str(tmp_path / "chain" / "state.json"),
            "deployment_file": str(tmp_path / "chain" / "deployment.json"),
        },
    }


def fleet_config(tmp_path: Path, **sections: dict[str, Any]) -> FleetConfig:
    """Defaults, free ports for every service, then the given section overrides."""
    health_port = free_port()
    overrides: dict[str, dict[str, Any]] = {
        "cluster": {"health_urls": [f"http://127.0.0.1:{health_port}"]},
        "health": {"port": health_port},
        "scheduler": {"port": free_port()},
        "gateway": {"port": free_port(), "grpc_port": free_port()},
        "node": {"drain_timeout_s": 10.0},
        "payments": {"enabled": False},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    empty = tmp_path / "fleet.toml"
    empty.touch()
    return load_config(empty, env={}, overrides=overrides)


def cluster(
    tmp_path: Path, node_models: dict[str, Iterable[str]], **sections: dict[str, Any]
) -> LocalCluster:
    """A cluster whose nodes each serve their own set of models.

    Its gateway waits 2 s, not 0.25, before it takes a node's attempt for late (unless the
    test says otherwise): on this shared 2-core machine a Triton stalls that long now and then,
    and a hedge or an ejection then would run an inference twice or skew a balance that the
    test counts. The grey-failure tests keep the default (test_netns, bench.faults)."""
    gateway = {"attempt_timeout_floor_s": 2.0, **sections.pop("gateway", {})}
    specs = [
        NodeSpec(node_id, {"model_repository": str(repository(tmp_path / "repos" / node_id, models))})
        for node_id, models in node_models.items()
    ]
    return LocalCluster(fleet_config(tmp_path, gateway=gateway, **sections), tmp_path / "state", specs)
