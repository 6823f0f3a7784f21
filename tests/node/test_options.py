"""The flags tritonserver is started with."""

from __future__ import annotations

from pathlib import Path

from tritonfleet.config import ModelControlMode
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
    poll = TritonOptions(Path("m"), model_control_mode=ModelControlMode.POLL, repository_poll_s=2)
    explicit = TritonOptions(Path("m"), model_control_mode=ModelControlMode.EXPLICIT)
    assert {"--model-control-mode=poll", "--repository-poll-secs=2"} <= set(poll.argv(TritonPorts(1, 2, 3)))
    flags = explicit.argv(TritonPorts(1, 2, 3))
    assert {"--model-control-mode=explicit", "--load-model=*"} <= set(flags)
    assert not any("poll" in flag for flag in flags)


def test_nodes_start_in_explicit_mode_with_the_whole_repository_loaded() -> None:
    """The default, so that the gateway's model control can load and unload on every node."""
    flags = TritonOptions(Path("m")).argv(TritonPorts(1, 2, 3))
    assert [flag for flag in flags if flag.startswith(("--model-control-mode", "--load-model"))] == [
        "--model-control-mode=explicit",
        "--load-model=*",
    ]


def test_explicit_mode_loads_only_the_models_named_at_start() -> None:
    """One `--load-model` a name; none at all for an empty list."""
    some = TritonOptions(Path("m"), load_models=("simple", "digits")).argv(TritonPorts(1, 2, 3))
    none = TritonOptions(Path("m"), load_models=()).argv(TritonPorts(1, 2, 3))
    assert [flag for flag in some if flag.startswith("--load-model")] == [
        "--load-model=simple",
        "--load-model=digits",
    ]
    assert "--model-control-mode=explicit" in none and not any("--load-model" in flag for flag in none)


def test_stop_wait_covers_a_poll_period_and_both_exit_timeouts() -> None:
    """Signalled mid-poll, Triton sleeps a poll period, then waits twice its exit timeout."""
    options = TritonOptions(
        Path("m"), model_control_mode=ModelControlMode.POLL, repository_poll_s=5, exit_timeout_s=2.5
    )
    assert "--exit-timeout-secs=3" in options.argv(TritonPorts(1, 2, 3))
    assert options.stop_wait_s == 5 + 2 * 3 + 2.0


def test_stop_wait_in_explicit_mode_has_no_poll_period() -> None:
    """No poller to sleep through: twice the exit timeout, then a tick."""
    options = TritonOptions(Path("m"), repository_poll_s=5, exit_timeout_s=2.5)
    assert options.stop_wait_s == 2 * 3 + 2.0
