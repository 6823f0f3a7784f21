"""The deploy tree, and the pinned tools of the dev dependencies that read it (installed in the
virtual environment by `make install`): a missing tool fails the test, never skips it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tritonfleet.config import ENV_PREFIX, FleetConfig

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
GUIDE = ROOT / "docs" / "deploy.md"
# The Kubernetes releases whose API schemas every manifest must satisfy: the oldest the guide
# supports (managed clusters lag upstream's releases) and the newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
# What `kubectl kustomize` renders: the base alone, and every overlay.
RENDERED = ("base", *sorted(f"overlays/{p.name}" for p in (KUBERNETES / "overlays").iterdir() if p.is_dir()))


def tool(name: str) -> Path:
    """A command of the virtual environment, installed from a pinned dev dependency."""
    path = Path(sys.executable).parent / name
    assert path.is_file(), (
        f"{name} is missing from {path.parent}: run `make install` (pyproject's dev extras)"
    )
    return path


def run(*argv: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in argv], cwd=cwd, capture_output=True, text=True, timeout=120)


def kustomize(folder: Path) -> list[dict[str, Any]]:
    """The manifests that `kubectl kustomize folder` renders."""
    done = run(tool("kubectl"), "kustomize", folder)
    assert done.returncode == 0, f"kubectl kustomize {folder}:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def named(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def config_key(name: str) -> str | None:
    """`TRITONFLEET_NODE_GPUS` → `node.gpus` when that key exists; None for any other name."""
    if not name.startswith(ENV_PREFIX):
        return None
    rest = name[len(ENV_PREFIX) :].lower()
    for section in sorted(FleetConfig.model_fields, key=len, reverse=True):
        model = FleetConfig.model_fields[section].annotation
        key = rest.removeprefix(section + "_")
        if key != rest and model is not None and key in model.model_fields:
            return f"{section}.{key}"
    return None


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as kustomize's configMapGenerator reads them (comments skipped)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
