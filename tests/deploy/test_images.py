"""deploy/Containerfile*: lint-clean by hadolint, on the stated base images, non-root, with a
health check, and nothing secret inside. The images are not built here (no registry access)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, GUIDE, run, tool

IMAGES = {
    DEPLOY / "Containerfile": "python:3.11.14-slim-bookworm",
    DEPLOY / "Containerfile.node": "nvcr.io/nvidia/tritonserver:24.10-py3",
}


def hadolint(*files: Path) -> tuple[int, str]:
    done = run(tool("hadolint"), "--no-color", "--config", DEPLOY / "hadolint.yaml", *files)
    return done.returncode, done.stdout + done.stderr


def final_stage(text: str) -> str:
    return re.split(r"^FROM ", text, flags=re.MULTILINE)[-1]


def test_hadolint_finds_nothing_in_either_image() -> None:
    """Every finding fails (deploy/hadolint.yaml), informational ones included: none."""
    assert hadolint(*IMAGES) == (0, "")


def test_hadolint_refuses_an_unpinned_root_image(tmp_path: Path) -> None:
    """The linter catches what matters here: a floating base, unpinned packages, a root user."""
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM python\nRUN pip install httpx\nUSER root\n")
    status, findings = hadolint(bad)
    assert status != 0
    assert {"DL3006", "DL3013", "DL3002"} <= set(re.findall(r"DL\d{4}", findings))


@pytest.mark.parametrize("path", list(IMAGES))
def test_the_image_is_multi_stage_on_the_stated_base_runs_unprivileged_and_checks_health(path: Path) -> None:
    """Built in one stage, shipped from another on the pinned base, as uid 10001, with a HEALTHCHECK
    on /healthz; the guide states the same base."""
    text = path.read_text()
    bases = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert bases[0] == IMAGES[path] and len(bases) >= 2
    shipped = final_stage(text)
    assert re.search(r"^USER 10001:10001$", shipped, flags=re.MULTILINE)
    assert "HEALTHCHECK" in shipped and "healthz" in text
    assert f"`{IMAGES[path]}`" in GUIDE.read_text()


@pytest.mark.parametrize("path", list(IMAGES))
def test_nothing_secret_is_baked_in(path: Path) -> None:
    """No variable that the file sets names a token, password, key or ledger URL; the build
    context leaves out everything but the sources (its .dockerignore)."""
    secretive = re.findall(
        r"\b[A-Z_]*(?:TOKEN|PASSWORD|SECRET|KEYSTORE|LEDGER_URL|RPC_URL)[A-Z_]*=", path.read_text()
    )
    assert secretive == []
    ignore = path.with_name(path.name + ".dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"
    assert {rule for rule in rules if rule.startswith("!")} == {
        "!pyproject.toml",
        "!README.md",
        "!src/",
        "!contracts/",
    }
