"""A node's GPUs: read from nvidia-smi (a fake one here), named in heartbeats, given to Triton."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path

import pytest

from tests.node.fakes import FakeHealthChecker, node_config, wait_until
from tritonfleet.config import ConfigError, load_config
from tritonfleet.node.gpus import MIB, parse, read_gpus, visible_devices
from tritonfleet.node.options import TritonOptions
from tritonfleet.node.service import NodeManager
from tritonfleet.protocol import GpuDevice, NodeState

H100 = "0, NVIDIA H100 80GB HBM3, 81559, GPU-1f2e\n1, NVIDIA H100 80GB HBM3, 81559, GPU-3c4d\n"


def fake_nvidia_smi(folder: Path, output: str = H100, status: int = 0, hang: bool = False) -> Path:
    """An `nvidia-smi` that records its arguments beside itself and prints `output`, or hangs."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    # `exec`: the hanging one is the process itself, as a stuck nvidia-smi is, not a child of it.
    body = "exec sleep 60\n" if hang else f"cat <<'EOF'\n{output}EOF\nexit {status}\n"
    script.write_text(f'#!/bin/sh\necho "$@" > "{folder}/args"\n{body}')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_parse_reads_index_model_memory_and_uuid() -> None:
    """Two lines of nvidia-smi's CSV are two GPUs, memory in bytes."""
    assert parse(H100) == [
        GpuDevice(index=0, name="NVIDIA H100 80GB HBM3", memory_bytes=81559 * MIB, uuid="GPU-1f2e"),
        GpuDevice(index=1, name="NVIDIA H100 80GB HBM3", memory_bytes=81559 * MIB, uuid="GPU-3c4d"),
    ]


def test_parse_keeps_a_comma_in_a_model_name_and_skips_an_unreadable_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A name holding a comma stays whole; a line with `[N/A]` memory is skipped and logged."""
    text = "0, Some GPU, rev 2, 16384, GPU-a\n1, Other GPU, [N/A], GPU-b\n"
    with caplog.at_level(logging.WARNING):
        gpus = parse(text)
    assert [(gpu.name, gpu.memory_bytes) for gpu in gpus] == [("Some GPU, rev 2", 16384 * MIB)]
    assert "unreadable nvidia-smi line" in caplog.text


async def test_read_gpus_asks_for_the_visible_devices_only(tmp_path: Path) -> None:
    """With devices named, nvidia-smi is asked about those alone (`--id`), in CSV without units."""
    binary = fake_nvidia_smi(tmp_path)
    assert len(await read_gpus("0,1", str(binary))) == 2
    args = (tmp_path / "args").read_text().split()
    assert args == ["--query-gpu=index,name,memory.total,uuid", "--format=csv,noheader,nounits", "--id=0,1"]


async def test_no_failing_or_hanging_nvidia_smi_means_no_gpus(tmp_path: Path) -> None:
    """None on PATH, one that exits 9, one that does not answer within the timeout: [] each."""
    assert await read_gpus("", str(tmp_path / "absent")) == []
    assert await read_gpus("", str(fake_nvidia_smi(tmp_path / "failing", status=9))) == []
    hanging = fake_nvidia_smi(tmp_path / "hanging", hang=True)
    assert await read_gpus("", str(hanging), timeout_s=0.2) == []


def test_visible_devices_are_the_setting_else_the_managers_own() -> None:
    """node.gpus wins; without it the manager's CUDA_VISIBLE_DEVICES; neither: every GPU."""
    assert visible_devices("2", {"CUDA_VISIBLE_DEVICES": "0"}) == "2"
    assert visible_devices("", {"CUDA_VISIBLE_DEVICES": "0,1"}) == "0,1"
    assert visible_devices("", {}) == ""


def test_triton_gets_its_gpus_and_the_extra_flags_after_the_managers_own(tmp_path: Path) -> None:
    """node.gpus becomes CUDA_VISIBLE_DEVICES; node.triton_args come last on the command line."""
    extra = (
        "--pinned-memory-pool-byte-size=268435456",
        "--backend-config=python,shm-default-byte-size=1048576",
    )
    options = TritonOptions(tmp_path, gpus="1", extra_args=extra)
    assert options.argv(options.ports)[-2:] == list(extra)
    assert options.environment({"PATH": "/bin"}) == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "1"}
    assert "CUDA_VISIBLE_DEVICES" not in TritonOptions(tmp_path).environment({})


def test_triton_args_from_the_environment_are_a_json_list_and_leave_the_managed_flags(tmp_path: Path) -> None:
    """A JSON list keeps a backend setting's commas; a flag the manager sets is refused by name."""
    empty = tmp_path / "fleet.toml"
    empty.touch()
    args = '["--backend-config=python,a=1", "--cuda-memory-pool-byte-size=0:0"]'
    config = load_config(empty, env={"TRITONFLEET_NODE_TRITON_ARGS": args, "TRITONFLEET_NODE_GPUS": "0,1"})
    assert config.node.triton_args == ["--backend-config=python,a=1", "--cuda-memory-pool-byte-size=0:0"]
    assert config.node.gpus == "0,1"
    with pytest.raises(ConfigError, match="--http-port is the manager's to set"):
        load_config(empty, env={"TRITONFLEET_NODE_TRITON_ARGS": '["--http-port=9000"]'})
    with pytest.raises(ConfigError, match="not a --flag=value"):
        load_config(empty, env={"TRITONFLEET_NODE_TRITON_ARGS": '["268435456"]'})


async def test_heartbeats_name_the_gpus_and_triton_runs_with_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nvidia-smi on PATH, a real node's heartbeats carry its GPUs, and its tritonserver runs
    with CUDA_VISIBLE_DEVICES and the extra flags (a CPU build ignores both)."""
    fake_nvidia_smi(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    async with FakeHealthChecker() as checker:
        config = node_config(
            tmp_path, [checker.url], gpus="0", triton_args=["--pinned-memory-pool-byte-size=0"]
        )
        manager = NodeManager(config)
        try:
            await manager.start()
            ready = lambda: any(hb.state is NodeState.READY for hb in checker.heartbeats())  # noqa: E731
            await wait_until(ready, 30, "a ready heartbeat")
            assert manager.triton is not None
            pid = manager.triton.server_pid()
            environ = (await asyncio.to_thread(Path(f"/proc/{pid}/environ").read_bytes)).split(b"\0")
            log = manager.triton.log_path.read_text()
        finally:
            await manager.shutdown()
    assert [gpu.uuid for gpu in checker.heartbeats()[-1].gpus] == ["GPU-1f2e", "GPU-3c4d"]
    assert (tmp_path / "bin" / "args").read_text().split()[-1] == "--id=0"
    assert b"CUDA_VISIBLE_DEVICES=0" in environ
    assert "--pinned-memory-pool-byte-size=0" in log
