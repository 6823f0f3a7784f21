"""The operator's signing key: anvil's well-known accounts in dev mode, else an encrypted keystore.

A private key is never read from plain-text configuration and never logged; the keystore's
password comes from `chain.keystore_password` (in practice the environment variable
TRITONFLEET_CHAIN_KEYSTORE_PASSWORD, since secrets have no command-line flag) or from
`chain.keystore_password_file`.
"""

from __future__ import annotations

import json
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from tritonfleet.config import ChainConfig, ConfigError

# The public mnemonic from which anvil (and hardhat) derive their funded test accounts. Its
# keys are known to everyone: fine for a development chain, fatal anywhere else.
DEV_MNEMONIC = "test test test test test test test test test test test junk"


def dev_account(index: int = 0) -> LocalAccount:
    """Anvil's test account number `index` (0 is the operator; anvil funds 0 to 9)."""
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")


def operator_account(config: ChainConfig) -> LocalAccount:
    if config.dev:
        return dev_account(0)
    if config.keystore_file is None:
        raise ConfigError("chain.keystore_file: required outside dev mode (chain.dev = false)")
    keystore = _read_keystore(config)
    try:
        key = Account.decrypt(keystore, _password(config))
    except ValueError as exc:
        # eth-account says "MAC mismatch" for a wrong password; never echo the key material.
        raise ConfigError(f"chain.keystore_file: cannot decrypt {config.keystore_file}: {exc}") from None
    account: LocalAccount = Account.from_key(key)
    return account


def _read_keystore(config: ChainConfig) -> dict[str, Any]:
    assert config.keystore_file is not None
    try:
        keystore: dict[str, Any] = json.loads(config.keystore_file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"chain.keystore_file: cannot read {config.keystore_file}: {exc}") from exc
    return keystore


def _password(config: ChainConfig) -> str:
    if config.keystore_password is not None:
        return config.keystore_password.get_secret_value()
    if config.keystore_password_file is not None:
        try:
            # A trailing newline is an artifact of `echo pw > file`, not part of the password.
            return config.keystore_password_file.read_text().rstrip("\n")
        except OSError as exc:
            raise ConfigError(
                f"chain.keystore_password_file: cannot read {config.keystore_password_file}: {exc}"
            ) from exc
    raise ConfigError(
        "no keystore password: set chain.keystore_password_file, "
        "or TRITONFLEET_CHAIN_KEYSTORE_PASSWORD in the environment"
    )
