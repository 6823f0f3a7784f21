"""TritonOptions: how a `tritonserver` is to run, and the command-line flags that say so."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tritonfleet.config import ModelControlMode
from tritonfleet.node.endpoints import TritonPorts, local_host
from tritonfleet.triton_admin import restricted_args


@dataclass(frozen=True, slots=True)
class TritonOptions:
    model_repository: Path
    bind_host: str = "127.0.0.1"
    ports: TritonPorts = field(default_factory=TritonPorts)
    model_control_mode: ModelControlMode = ModelControlMode.EXPLICIT
    repository_poll_s: int = 5
    # Loaded at start in explicit mode; "*" is the whole repository.
    load_models: tuple[str, ...] = ("*",)
    start_timeout_s: float = 120.0
    # Triton's own `--exit-timeout-secs`: for open connections, then again for in-flight requests.
    exit_timeout_s: float = 30.0
    log_path: Path | None = None
    # Puts Triton's admin APIs behind this key (tritonfleet.triton_admin); "" leaves them open.
    admin_key: str = field(default="", repr=False)
    # CUDA_VISIBLE_DEVICES of the started Triton; "" leaves the manager's environment as it is.
    gpus: str = ""
    # More flags (node.triton_args), after the manager's own.
    extra_args: tuple[str, ...] = ()

    @property
    def connect_host(self) -> str:
        return local_host(self.bind_host)

    @property
    def _exit_timeout_secs(self) -> int:
        return max(1, math.ceil(self.exit_timeout_s))

    @property
    def stop_wait_s(self) -> float:
        """The longest a SIGTERMed Triton may take: its repository poller may sleep a whole period
        first (when signalled during a poll), then each phase has exit_timeout_s, then a tick."""
        poll_s = self.repository_poll_s if self.model_control_mode == ModelControlMode.POLL else 0
        return poll_s + 2 * self._exit_timeout_secs + 2.0

    def argv(self, ports: TritonPorts) -> list[str]:
        args = [
            f"--model-repository={self.model_repository.resolve()}",
            f"--http-port={ports.http}",
            f"--grpc-port={ports.grpc}",
            f"--metrics-port={ports.metrics}",
            *(f"--{kind}-address={self.bind_host}" for kind in ("http", "grpc", "metrics")),
            "--allow-metrics=true",
            # One broken model (or a stray folder) must not take the others down: Triton stays
            # up and ready, and the node announces the models that are READY.
            "--exit-on-error=false",
            "--strict-readiness=false",
            f"--exit-timeout-secs={self._exit_timeout_secs}",
            f"--model-control-mode={self.model_control_mode}",
        ]
        if self.model_control_mode == ModelControlMode.POLL:
            args.append(f"--repository-poll-secs={self.repository_poll_s}")
        elif self.model_control_mode == ModelControlMode.EXPLICIT:
            args += [f"--load-model={name}" for name in self.load_models]
        if self.admin_key:
            args += restricted_args(self.admin_key)
        return [*args, *self.extra_args]

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """Triton's environment: `base` with the GPUs it may use, when they are set."""
        env = dict(base)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus
        return env
