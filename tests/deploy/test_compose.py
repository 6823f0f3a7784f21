"""deploy/compose.yaml: valid for `docker compose config` (the pinned Compose of the dev
dependencies, and the host's `docker compose` where it has one), with the services of the
Kubernetes manifests and settings that are keys of the configuration."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import DEPLOY, config_key, run, tool

COMPOSE = DEPLOY / "compose.yaml"
PROFILES = ("--profile", "gpu", "--profile", "ledger")
SERVICES = {
    "health-checker-1",
    "health-checker-2",
    "scheduler",
    "gateway",
    "token-manager",
    "settler",
    "web",
    "node",
    "postgres",
}


def compose_config(*command: str | Path, file: Path = COMPOSE) -> tuple[int, str]:
    done = run(*command, "--file", file, *PROFILES, "config")
    return done.returncode, done.stdout if done.returncode == 0 else done.stderr


def host_compose() -> list[str] | None:
    """`docker compose` when the host's Docker has the plugin; None where it has not."""
    docker = shutil.which("docker")
    if docker is None or run(docker, "compose", "version").returncode != 0:
        return None
    return [docker, "compose"]


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    status, out = compose_config(tool("docker-compose"))
    assert status == 0, out
    config: dict[str, Any] = yaml.safe_load(out)
    return config


def test_compose_config_accepts_the_file(rendered: dict[str, Any]) -> None:
    """The pinned Compose renders it, with every service of the Kubernetes manifests."""
    assert set(rendered["services"]) == SERVICES


def test_the_hosts_docker_compose_accepts_it_too() -> None:
    """Where this host's Docker has Compose, it agrees (this machine's Docker has none: the
    pinned one above is the same program, the docker/compose release of the dev dependencies)."""
    command = host_compose()
    if command is None:
        assert run(tool("docker-compose"), "version").stdout.startswith("Docker Compose version v")
        return
    status, out = compose_config(*command)
    assert status == 0, out


def test_compose_config_refuses_a_broken_file(tmp_path: Path) -> None:
    """An unknown service key fails, so the check above is no rubber stamp."""
    broken = tmp_path / "compose.yaml"
    broken.write_text(
        COMPOSE.read_text().replace("    shm_size: 2gb\n", "    shm_size: 2gb\n    gpu_count: 1\n")
    )
    status, out = compose_config(tool("docker-compose"), file=broken)
    assert status != 0 and "gpu_count" in out


def test_every_setting_is_a_key_of_the_configuration(rendered: dict[str, Any]) -> None:
    """Each TRITONFLEET_* variable sets a real key; secrets come as files, never as values."""
    names = {name for service in rendered["services"].values() for name in service.get("environment", {})}
    fleet = sorted(name for name in names if name.startswith("TRITONFLEET_"))
    assert [name for name in fleet if config_key(name) is None] == []
    assert not [name for name in fleet if name.endswith(("_TOKEN", "_PASSWORD", "_LEDGER_URL"))]


def test_there_is_one_settler_and_the_node_has_the_gpus(rendered: dict[str, Any]) -> None:
    """One settler (no replicas), and the node reserves the host's NVIDIA GPUs with room for shm."""
    services = rendered["services"]
    assert services["settler"].get("deploy", {}).get("replicas", 1) == 1
    devices = services["node"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"capabilities": ["gpu"], "driver": "nvidia", "count": -1}]
    assert int(services["node"]["shm_size"]) >= 1 << 30
