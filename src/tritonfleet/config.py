"""One TOML file, a section per service, every key overridable by environment and flags.

Precedence, lowest first: defaults < `fleet.toml` < `TRITONFLEET_<SECTION>_<KEY>` < CLI flags.
Durations end in `_s`, sizes in `_bytes`. Secrets come from files or the environment and are
kept as `SecretStr`, so that printing a config never shows them.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

DEFAULT_CONFIG_FILE = Path("fleet.toml")
ENV_PREFIX = "TRITONFLEET_"


class ConfigError(Exception):
    """The configuration is invalid or incomplete; the message says which key and why."""

    exit_code = 2


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ClusterConfig(Section):
    """Keys shared by every service of one cluster."""

    # Shared secret that managers present to health checkers (`Authorization: Bearer`).
    token: SecretStr | None = None
    token_file: Path | None = None
    # Every health checker of the cluster; managers heartbeat to all, consumers watch all.
    health_urls: list[str] = ["http://127.0.0.1:8082"]

    def read_token(self) -> str:
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is not None:
            try:
                return self.token_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cluster.token_file: cannot read {self.token_file}: {exc}") from exc
        raise ConfigError(
            "no cluster token: set cluster.token_file, or TRITONFLEET_CLUSTER_TOKEN in the environment"
        )


class HealthConfig(Section):
    host: str = "127.0.0.1"
    port: int = 8082
    ttl_s: float = 3.0
    heartbeat_interval_s: float = 1.0
    probe_interval_s: float = 1.0
    probe_timeout_s: float = 1.0
    unhealthy_threshold: int = 3
    # Longest a watch request is held open before answering "no change".
    watch_timeout_s: float = 30.0


class Policy(StrEnum):
    ROUND_ROBIN = "round_robin"
    LEAST_OUTSTANDING = "least_outstanding"
    P2C = "p2c"


class SchedulerConfig(Section):
    host: str = "127.0.0.1"
    port: int = 8081
    policy: Policy = Policy.ROUND_ROBIN


class SchedulerMode(StrEnum):
    EMBEDDED = "embedded"
    REMOTE = "remote"


class NodeRoute(StrEnum):
    """Where the gateway sends a request: to Triton itself, or through the node's manager."""

    TRITON = "triton"
    MANAGER = "manager"


class GatewayConfig(Section):
    host: str = "127.0.0.1"
    port: int = 8080
    grpc_port: int = 8079
    scheduler: SchedulerMode = SchedulerMode.EMBEDDED
    scheduler_url: str = "http://127.0.0.1:8081"
    node_route: NodeRoute = NodeRoute.TRITON
    request_timeout_s: float = 60.0
    connect_timeout_s: float = 1.0
    max_body_bytes: int = 64 * 1024 * 1024
    # Largest gRPC message, in either direction (RESOURCE_EXHAUSTED above).
    grpc_max_message_bytes: int = 64 * 1024 * 1024
    max_attempts: int = 3
    # Passive ejection: after this many consecutive failures a node is skipped for a back-off
    # that starts at eject_base_s and doubles up to eject_max_s while it keeps failing.
    eject_after_failures: int = 1
    eject_base_s: float = 1.0
    eject_max_s: float = 30.0
    # Seconds advised in Retry-After when no node serves the model.
    retry_after_s: int = 1


class NodeConfig(Section):
    # Stable across restarts; empty means derived from the host name and the manager port.
    node_id: str = ""
    host: str = "127.0.0.1"
    # Manager port; 0 picks a free one.
    port: int = 0
    # Host name that other machines use to reach this node; empty means `host`.
    advertise_host: str = ""
    model_repository: Path = Path("models")
    # Attach to an already running Triton instead of starting one.
    triton_url: str = ""
    triton_grpc_url: str = ""
    triton_metrics_url: str = ""
    # Ports of the Triton this manager starts; 0 picks free ones.
    triton_http_port: int = 0
    triton_grpc_port: int = 0
    triton_metrics_port: int = 0
    # `poll` lets models added to the repository appear in heartbeats without a restart.
    model_control_mode: str = "poll"
    repository_poll_s: int = 5
    capacity: int = 1
    drain_timeout_s: float = 30.0
    triton_start_timeout_s: float = 120.0
    restart_backoff_s: float = 0.5
    restart_backoff_max_s: float = 10.0
    log_dir: Path | None = None
    # `tritonserver` to run: empty means the one on PATH, else the nvidia-pytriton wheel's;
    # `wheel` forces the wheel's; anything else is a path to the binary.
    triton_binary: str = ""
    # Forwarding mode (requests through the manager): longest wait for Triton, largest body.
    request_timeout_s: float = 60.0
    max_body_bytes: int = 64 * 1024 * 1024


class Settlement(StrEnum):
    BATCH = "batch"
    # The original design: one transaction per inference.
    PER_REQUEST = "per_request"


class PaymentsConfig(Section):
    # Every inference through the gateway is charged; false turns the whole paid path off.
    enabled: bool = True
    # SQLAlchemy URL of the usage ledger; empty means SQLite under the state directory.
    ledger_url: str = ""
    # Price per request in credit base units, by "model" or "model:version" (the latter wins).
    prices: dict[str, int] = {"simple": 1, "digits": 2, "stable_diffusion": 50}
    # Price of a model that `prices` does not name.
    default_price: int = 1
    settlement: Settlement = Settlement.BATCH
    settle_interval_s: float = 10.0
    # A batch pays at most 1000 accounts (the vault's bound) whatever this says. Its gas grows
    # with its accounts, not its charges: the more charges a batch holds, the less gas each.
    settle_max_charges: int = 5000
    confirmations: int = 1
    # Token manager (API keys, balances, prices, usage, dev faucet).
    host: str = "127.0.0.1"
    port: int = 8083
    challenge_ttl_s: float = 300.0
    # The gateway holding reservations in flight, which balances subtract; empty: none.
    gateway_url: str = "http://127.0.0.1:8080"


class ChainConfig(Section):
    rpc_url: str = "http://127.0.0.1:8545"
    chain_id: int = 31337
    # Development chain: anvil with its well-known accounts, state kept across restarts.
    dev: bool = True
    host: str = "127.0.0.1"
    port: int = 8545
    state_file: Path = Path(".tritonfleet/chain/state.json")
    # Contract addresses; empty means read from deployment_file (written by the deployer).
    deployment_file: Path = Path(".tritonfleet/chain/deployment.json")
    # Operator key outside dev mode: a standard JSON keystore and its password.
    keystore_file: Path | None = None
    keystore_password: SecretStr | None = None
    keystore_password_file: Path | None = None
    # Deploy-time delay between a withdrawal request and the withdrawal.
    withdrawal_delay_s: int = 3600
    receipt_timeout_s: float = 120.0


class WebConfig(Section):
    """The web frontend; it finds the health checkers in [cluster] health_urls."""

    host: str = "127.0.0.1"
    port: int = 8090
    gateway_url: str = "http://127.0.0.1:8080"
    token_manager_url: str = "http://127.0.0.1:8083"
    # Longest wait for one inference through the gateway: text to image takes seconds on a GPU
    # and more on a CPU.
    request_timeout_s: float = 120.0
    # Largest request body the web backend accepts (prompts, playground inputs).
    max_body_bytes: int = 4 * 1024 * 1024
    # Period of the cluster page's probes; a dead node shows red within about two of them.
    refresh_interval_s: float = 0.5


class FleetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cluster: ClusterConfig = ClusterConfig()
    health: HealthConfig = HealthConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    gateway: GatewayConfig = GatewayConfig()
    node: NodeConfig = NodeConfig()
    payments: PaymentsConfig = PaymentsConfig()
    chain: ChainConfig = ChainConfig()
    web: WebConfig = WebConfig()


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] = os.environ,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> FleetConfig:
    """Merge defaults, the TOML file, the environment and explicit overrides, in that order."""
    data: dict[str, dict[str, Any]] = {}
    file = path if path is not None else DEFAULT_CONFIG_FILE
    if path is not None or file.exists():
        try:
            with file.open("rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {file}: {exc}") from exc
    for section, values in _from_env(env).items():
        data.setdefault(section, {}).update(values)
    for section, given in (overrides or {}).items():
        data.setdefault(section, {}).update(given)
    try:
        return FleetConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    sections = FleetConfig.model_fields
    found: dict[str, dict[str, Any]] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections:
            continue
        model = sections[section].annotation
        assert isinstance(model, type) and issubclass(model, Section)
        if key in model.model_fields:
            found.setdefault(section, {})[key] = parse_value(raw, model.model_fields[key].annotation)
    return found


def parse_value(raw: str, annotation: Any) -> Any:
    """Strings from the environment or flags: lists as JSON or comma-separated, tables as JSON,
    the rest as given (pydantic converts them)."""
    if getattr(annotation, "__origin__", None) is dict:
        return json.loads(raw)
    if getattr(annotation, "__origin__", None) is list:
        stripped = raw.strip()
        if stripped.startswith("["):
            return json.loads(stripped)
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return raw


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        lines.append(f"{key}: {err['msg']}")
    return "invalid configuration: " + "; ".join(lines)


def to_env(config: FleetConfig) -> dict[str, str]:
    """The environment that makes a child process load exactly this config (secrets excluded)."""
    env = {}
    for section in FleetConfig.model_fields:
        values = getattr(config, section).model_dump(mode="json", exclude_none=True)
        for key, value in values.items():
            if isinstance(getattr(getattr(config, section), key), SecretStr):
                continue
            text = json.dumps(value) if isinstance(value, list | dict) else str(value)
            env[f"{ENV_PREFIX}{section.upper()}_{key.upper()}"] = text
    return env
