from pathlib import Path

import pytest

from tritonfleet.cli import build_parser, parse_config
from tritonfleet.config import ConfigError, Policy, load_config, to_env


def test_precedence_is_defaults_file_env_flags(tmp_path: Path) -> None:
    toml = tmp_path / "fleet.toml"
    toml.write_text('[gateway]\nport = 9000\nmax_attempts = 5\n[scheduler]\npolicy = "p2c"\n')
    env = {"TRITONFLEET_GATEWAY_PORT": "9100", "TRITONFLEET_HEALTH_TTL_S": "7.5"}
    config = load_config(toml, env=env, overrides={"gateway": {"max_attempts": "9"}})
    assert config.gateway.port == 9100
    assert config.gateway.max_attempts == 9
    assert config.scheduler.policy is Policy.P2C
    assert config.health.ttl_s == 7.5


def test_list_keys_accept_commas_or_json() -> None:
    env = {"TRITONFLEET_CLUSTER_HEALTH_URLS": "http://a:1, http://b:2"}
    assert load_config(None, env=env).cluster.health_urls == ["http://a:1", "http://b:2"]
    env = {"TRITONFLEET_CLUSTER_HEALTH_URLS": '["http://c:3"]'}
    assert load_config(None, env=env).cluster.health_urls == ["http://c:3"]


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    toml = tmp_path / "fleet.toml"
    toml.write_text("[gateway]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"gateway\.prot"):
        load_config(toml, env={})


def test_missing_token_says_how_to_set_it() -> None:
    with pytest.raises(ConfigError, match="TRITONFLEET_CLUSTER_TOKEN"):
        load_config(None, env={}).cluster.read_token()


def test_secret_is_not_shown_when_printed() -> None:
    config = load_config(None, env={"TRITONFLEET_CLUSTER_TOKEN": "s3cret"})
    assert "s3cret" not in repr(config)
    assert config.cluster.read_token() == "s3cret"


LEDGER_URL = "postgresql+psycopg://fleet:db-s3cret@db.internal/ledger"


def test_the_ledger_url_is_a_secret_no_flag_no_child_environment_no_repr(tmp_path: Path) -> None:
    """It carries the database password: it never shows on a command line (`ps`), in a child's
    environment (to_env) or in a printed config; it is read from the environment or a file."""
    config = load_config(None, env={"TRITONFLEET_PAYMENTS_LEDGER_URL": LEDGER_URL})
    assert config.payments.read_ledger_url() == LEDGER_URL
    assert "db-s3cret" not in repr(config)
    assert "db-s3cret" not in "".join(to_env(config).values())
    with pytest.raises(SystemExit):
        build_parser().parse_args(["gateway", "--payments-ledger-url", LEDGER_URL])
    held = tmp_path / "ledger_url"
    held.write_text(LEDGER_URL + "\n")
    from_file = load_config(None, env={"TRITONFLEET_PAYMENTS_LEDGER_URL_FILE": str(held)})
    assert from_file.payments.read_ledger_url() == LEDGER_URL
    assert load_config(None, env={}).payments.read_ledger_url() is None


def test_flags_override_own_section_and_prefixed_others() -> None:
    args = build_parser().parse_args(
        [
            "gateway",
            "--port",
            "9200",
            "--scheduler-policy",
            "least_outstanding",
            "--health-urls",
            "http://h:1",
        ]
    )
    config = parse_config(args)
    assert config.gateway.port == 9200
    assert config.scheduler.policy is Policy.LEAST_OUTSTANDING
    assert config.cluster.health_urls == ["http://h:1"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["node", "--token", "x"])


def test_to_env_round_trips_everything_but_secrets(tmp_path: Path) -> None:
    config = load_config(
        None,
        env={"TRITONFLEET_CLUSTER_TOKEN": "s3cret"},
        overrides={"gateway": {"port": 1234}, "cluster": {"health_urls": ["http://x:1", "http://y:2"]}},
    )
    env = to_env(config)
    assert "s3cret" not in "".join(env.values())
    again = load_config(None, env=env)
    assert again.gateway.port == 1234
    assert again.cluster.health_urls == ["http://x:1", "http://y:2"]
    assert again.model_dump(exclude={"cluster"}) == config.model_dump(exclude={"cluster"})


def test_a_key_that_moved_to_another_section_is_an_error_naming_its_new_place(tmp_path: Path) -> None:
    toml = tmp_path / "fleet.toml"
    toml.write_text("[payments]\nport = 9083\n")
    with pytest.raises(ConfigError, match=r"payments\.port .*set port in \[token_manager\]"):
        load_config(toml, env={})
    with pytest.raises(ConfigError, match=r"payments\.settle_interval_s .*set interval_s in \[settler\]"):
        load_config(None, env={"TRITONFLEET_PAYMENTS_SETTLE_INTERVAL_S": "3"})


def test_sections_whose_names_hold_underscores_are_read_from_the_environment() -> None:
    config = load_config(
        None, env={"TRITONFLEET_TOKEN_MANAGER_PORT": "9183", "TRITONFLEET_SETTLER_MAX_CHARGES": "7"}
    )
    assert (config.token_manager.port, config.settler.max_charges) == (9183, 7)
    assert load_config(None, env=to_env(config)).token_manager.port == 9183


def test_every_command_has_a_flag_for_each_key_of_the_sections_it_reads() -> None:
    args = build_parser().parse_args(
        [
            "gateway",
            "--fan-out-timeout-s",
            "2.5",
            "--health-watch-timeout-s",
            "4",
            "--payments-refresh-s",
            "0.5",
            "--token-manager-port",
            "9183",
        ]
    )
    config = parse_config(args)
    assert config.gateway.fan_out_timeout_s == 2.5 and config.health.watch_timeout_s == 4
    assert config.payments.refresh_s == 0.5 and config.token_manager.port == 9183
    settler = parse_config(
        build_parser().parse_args(["settler", "--interval-s", "3", "--chain-confirmations", "2"])
    )
    assert settler.settler.interval_s == 3 and settler.chain.confirmations == 2


@pytest.mark.parametrize(
    ("chain", "refused"),
    [
        ({"chain_id": 1}, "chain id 1"),
        ({"rpc_url": "https://mainnet.example.org/v3/SECRETKEY"}, "loopback"),
        ({"keystore_file": "operator.json"}, "keystore"),
    ],
    ids=["mainnet chain id", "remote RPC", "with a keystore"],
)
def test_dev_mode_is_refused_off_a_local_development_chain(chain: dict[str, object], refused: str) -> None:
    """Dev mode signs with anvil's well-known keys and opens a faucet: never on a real chain."""
    with pytest.raises(ConfigError, match=refused) as raised:
        load_config(None, env={}, overrides={"chain": {"dev": True, **chain}})
    assert "SECRETKEY" not in str(raised.value), "an RPC URL's key is not echoed"


@pytest.mark.parametrize("rpc_url", ["http://127.0.0.1:8545", "http://localhost:9545", "http://[::1]:8545"])
def test_dev_mode_runs_on_anvil_on_this_machine(rpc_url: str) -> None:
    assert load_config(None, env={}, overrides={"chain": {"dev": True, "rpc_url": rpc_url}}).chain.dev
    off = load_config(
        None, env={}, overrides={"chain": {"dev": False, "chain_id": 1, "rpc_url": "https://x.org"}}
    )
    assert not off.chain.dev


def test_nodes_default_to_explicit_model_control_with_every_model_loaded() -> None:
    """Explicit mode, `*` loaded at start; both overridable, and a mode Triton lacks is refused."""
    node = load_config(None, env={}).node
    assert (node.model_control_mode, node.load_models) == ("explicit", ["*"])
    env = {"TRITONFLEET_NODE_MODEL_CONTROL_MODE": "poll", "TRITONFLEET_NODE_LOAD_MODELS": "simple, digits"}
    node = load_config(None, env=env).node
    assert (node.model_control_mode, node.load_models) == ("poll", ["simple", "digits"])
    with pytest.raises(ConfigError, match=r"node\.model_control_mode"):
        load_config(None, env={"TRITONFLEET_NODE_MODEL_CONTROL_MODE": "explict"})
