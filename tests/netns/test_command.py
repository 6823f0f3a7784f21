"""`python -m tritonfleet.netns`: it reads the running cluster's hosts file, or says there is none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonfleet.netns.command import HOSTS_FILE, main

HOST = {"name": "health", "netns": "tf1n0-health", "veth": "tf1n0-0", "address": "10.213.0.2"}


def hosts_file(state_dir: Path) -> Path:
    state_dir.mkdir(exist_ok=True)
    (state_dir / HOSTS_FILE).write_text(json.dumps({"hosts": {"health": HOST}, "managers": {}}))
    return state_dir


def test_without_a_running_cluster_it_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--state-dir", str(tmp_path), "hosts"]) == 2
    assert "tritonfleet netns" in capsys.readouterr().err


def test_hosts_lists_each_host_with_its_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--state-dir", str(hosts_file(tmp_path)), "hosts"]) == 0
    assert capsys.readouterr().out.split() == ["health", "10.213.0.2", "tf1n0-health", "tf1n0-0"]


def test_an_unknown_host_is_refused_naming_the_hosts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--state-dir", str(hosts_file(tmp_path)), "fault", "node-9", "partition"]) == 2
    assert "health" in capsys.readouterr().err


def test_pausing_a_host_that_is_no_node_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--state-dir", str(hosts_file(tmp_path)), "fault", "health", "pause"]) == 1
    assert "not a node" in capsys.readouterr().err
