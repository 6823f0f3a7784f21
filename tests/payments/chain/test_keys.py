"""The operator's and the settler's keys: anvil's test accounts in dev mode, encrypted keystores
otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from tritonfleet.config import ConfigError, load_config, to_env
from tritonfleet.payments.chain.keys import dev_account, operator_account, settler_account

# Anvil prints this address as its account (0); the key behind it is derived, never stored.
ANVIL_FIRST_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def keystore(tmp_path: Path) -> tuple[LocalAccount, Path]:
    account: LocalAccount = Account.create()
    # Few pbkdf2 rounds: the test checks the round trip, not the key stretching.
    encrypted = Account.encrypt(account.key, PASSWORD, kdf="pbkdf2", iterations=1000)
    path = tmp_path / "operator.json"
    path.write_text(json.dumps(encrypted))
    return account, path


def test_dev_mode_uses_anvils_first_account() -> None:
    """In dev mode the operator is anvil's funded account 0, derived from the public test mnemonic."""
    assert operator_account(load_config(env={}).chain).address == ANVIL_FIRST_ADDRESS
    assert dev_account(0).address == ANVIL_FIRST_ADDRESS != dev_account(1).address


def test_keystore_with_the_password_from_the_environment(keystore: tuple[LocalAccount, Path]) -> None:
    """Outside dev mode the keystore decrypts with TRITONFLEET_CHAIN_KEYSTORE_PASSWORD."""
    account, path = keystore
    env = {
        "TRITONFLEET_CHAIN_DEV": "false",
        "TRITONFLEET_CHAIN_KEYSTORE_FILE": str(path),
        "TRITONFLEET_CHAIN_KEYSTORE_PASSWORD": PASSWORD,
    }
    config = load_config(env=env)
    assert operator_account(config.chain).address == account.address
    # The password is a secret: neither the printed config nor a child's environment shows it.
    assert PASSWORD not in repr(config) and PASSWORD not in str(to_env(config))


def test_keystore_with_the_password_from_a_file(keystore: tuple[LocalAccount, Path], tmp_path: Path) -> None:
    """The password may sit in a file instead; its trailing newline is not part of it."""
    account, path = keystore
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    overrides = {"chain": {"dev": False, "keystore_file": str(path), "keystore_password_file": str(secret)}}
    assert operator_account(load_config(env={}, overrides=overrides).chain).address == account.address


def test_a_wrong_password_is_a_config_error(keystore: tuple[LocalAccount, Path]) -> None:
    """A wrong password fails with a ConfigError that names the file and shows no key material."""
    account, path = keystore
    overrides = {"chain": {"dev": False, "keystore_file": str(path), "keystore_password": "wrong"}}
    with pytest.raises(ConfigError, match="cannot decrypt") as caught:
        operator_account(load_config(env={}, overrides=overrides).chain)
    assert account.key.hex() not in str(caught.value) and caught.value.__cause__ is None


def test_no_keystore_outside_dev_mode_is_a_config_error() -> None:
    """Without dev mode and without a keystore there is no operator key, and the error says so."""
    with pytest.raises(ConfigError, match="keystore_file: required"):
        operator_account(load_config(env={}, overrides={"chain": {"dev": False}}).chain)


def test_no_password_is_a_config_error(keystore: tuple[LocalAccount, Path]) -> None:
    """A keystore without a password names both ways to give one."""
    _, path = keystore
    overrides = {"chain": {"dev": False, "keystore_file": str(path)}}
    with pytest.raises(ConfigError, match="TRITONFLEET_CHAIN_KEYSTORE_PASSWORD"):
        operator_account(load_config(env={}, overrides=overrides).chain)


def test_dev_mode_settles_with_another_anvil_account() -> None:
    """In dev mode the settler is anvil's account 1: another key than the owner's, as the vault asks."""
    config = load_config(env={})
    assert settler_account(config).address == dev_account(1).address != operator_account(config.chain).address


def test_the_settler_keystore_is_its_own(keystore: tuple[LocalAccount, Path]) -> None:
    """Outside dev mode the settler decrypts settler.keystore_file with its own password, whatever
    the operator's keystore is."""
    account, path = keystore
    env = {
        "TRITONFLEET_CHAIN_DEV": "false",
        "TRITONFLEET_SETTLER_KEYSTORE_FILE": str(path),
        "TRITONFLEET_SETTLER_KEYSTORE_PASSWORD": PASSWORD,
    }
    config = load_config(env=env)
    assert settler_account(config).address == account.address
    assert PASSWORD not in repr(config) and PASSWORD not in str(to_env(config))


def test_the_settler_never_borrows_the_operators_key(keystore: tuple[LocalAccount, Path]) -> None:
    """With only the operator's keystore and password configured, the settler has no key, and
    says which keys to set."""
    _, path = keystore
    overrides = {"chain": {"dev": False, "keystore_file": str(path), "keystore_password": PASSWORD}}
    with pytest.raises(ConfigError, match=r"settler\.keystore_file: required"):
        settler_account(load_config(env={}, overrides=overrides))
    overrides["settler"] = {"keystore_file": str(path)}
    with pytest.raises(ConfigError, match="TRITONFLEET_SETTLER_KEYSTORE_PASSWORD"):
        settler_account(load_config(env={}, overrides=overrides))


def test_dev_mode_excludes_a_settler_keystore(keystore: tuple[LocalAccount, Path]) -> None:
    """A settler keystore with chain.dev on is refused rather than silently ignored."""
    _, path = keystore
    with pytest.raises(ConfigError, match=r"excludes settler\.keystore_file"):
        settler_account(load_config(env={}, overrides={"settler": {"keystore_file": str(path)}}))
