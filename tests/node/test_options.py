"""The flags tritonserver is started with."""

from __future__ import annotations

from pathlib import Path

from tritonfleet.node.endpoints import TritonPorts
from tritonfleet.node.options import TritonOptions


def test_flags_bind_every_service_to_the_host_and_ports_given(tmp_path: Path) -> None:
    """HTTP, gRPC and metrics listen where asked, on the absolute repository path."""
    argv = TritonOptions(tmp_path, bind_host="0.0.0.0").argv(TritonPorts(1, 2, 3))
    assert f"--model-repository={tmp_path.resolve()}" in argv
    assert {"--http-port=1", "--grpc-port=2", "--metrics-port=3"} <= set(argv)
    assert {"--http-address=0.0.0.0", "--grpc-address=0.0.0.0", "--metrics-address=0.0.0.0"} <= set(argv)


def test_a_broken_model_does_not_stop_the_server() -> None:
    """Triton keeps running and ready with the models that load (a stray folder is not fatal)."""
    argv = TritonOptions(Path("m")).argv(TritonPorts(1, 2, 3))
    assert {"--exit-on-error=false", "--strict-readiness=false"} <= set(argv)


def test_model_control_mode_brings_its_own_flags() -> None:
    """poll polls at the configured period; explicit loads every model at start."""
    poll = TritonOptions(Path("m"), repository_poll_s=2).argv(TritonPorts(1, 2, 3))
    explicit = TritonOptions(Path("m"), model_control_mode="explicit").argv(TritonPorts(1, 2, 3))
    assert "--repository-poll-secs=2" in poll
    assert "--load-model=*" in explicit and not any("poll" in flag for flag in explicit)


def test_stop_wait_covers_a_poll_period_and_both_exit_timeouts() -> None:
    """Signalled mid-poll, Triton sleeps a poll period, then waits twice its exit timeout."""
    options = TritonOptions(Path("m"), repository_poll_s=5, exit_timeout_s=2.5)
    assert "--exit-timeout-secs=3" in options.argv(TritonPorts(1, 2, 3))
    assert options.stop_wait_s == 5 + 2 * 3 + 2.0
