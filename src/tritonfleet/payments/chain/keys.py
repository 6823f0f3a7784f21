"""The signing keys: anvil's well-known accounts in dev mode, else encrypted keystores.

Two keys, two roles. The operator's (`chain.keystore_file`) owns the vault and mints the
credit; the settler's (`settler.keystore_file`) holds the vault's settle role and nothing else,
so that the key online all day cannot move the treasury or the ownership.

A private key is never read from plain-text configuration and never logged; a keystore's
password comes from `<section>.keystore_password` (in practice the environment variable
TRITONFLEET_<SECTION>_KEYSTORE_PASSWORD, since secrets have no command-line flag) or from
`<section>.keystore_password_file`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr

from tritonfleet.config import ChainConfig, ConfigError, FleetConfig

# The public mnemonic from which anvil (and hardhat) derive their funded test accounts. Its
# keys are known to everyone: fine for a development chain, fatal anywhere else.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
# Anvil's accounts of the two roles: another key for each, as in production.
DEV_OPERATOR_INDEX = 0
DEV_SETTLER_INDEX = 1


def dev_account(index: int = DEV_OPERATOR_INDEX) -> LocalAccount:
    """Anvil's test account number `index` (0 is the operator, 1 the settler; anvil funds 0 to 9)."""
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")


def operator_account(config: ChainConfig) -> LocalAccount:
    if config.dev:
        return dev_account(DEV_OPERATOR_INDEX)
    return _decrypt("chain", config.keystore_file, config.keystore_password, config.keystore_password_file)


def settler_account(config: FleetConfig) -> LocalAccount:
    """The key that signs settlements: it holds the vault's settle role only."""
    settler = config.settler
    if config.chain.dev:
        if settler.keystore_file is not None:
            raise ConfigError("chain.dev uses anvil's development keys: it excludes settler.keystore_file")
        return dev_account(DEV_SETTLER_INDEX)
    return _decrypt(
        "settler", settler.keystore_file, settler.keystore_password, settler.keystore_password_file
    )


def _decrypt(
    section: str, keystore_file: Path | None, password: SecretStr | None, password_file: Path | None
) -> LocalAccount:
    if keystore_file is None:
        raise ConfigError(f"{section}.keystore_file: required outside dev mode (chain.dev = false)")
    keystore = _read_keystore(section, keystore_file)
    try:
        key = Account.decrypt(keystore, _password(section, password, password_file))
    except ValueError as exc:
        # eth-account says "MAC mismatch" for a wrong password; never echo the key material.
        raise ConfigError(f"{section}.keystore_file: cannot decrypt {keystore_file}: {exc}") from None
    account: LocalAccount = Account.from_key(key)
    return account


def _read_keystore(section: str, keystore_file: Path) -> dict[str, Any]:
    try:
        keystore: dict[str, Any] = json.loads(keystore_file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{section}.keystore_file: cannot read {keystore_file}: {exc}") from exc
    return keystore


def _password(section: str, password: SecretStr | None, password_file: Path | None) -> str:
    if password is not None:
        return password.get_secret_value()
    if password_file is not None:
        try:
            # A trailing newline is an artifact of `echo pw > file`, not part of the password.
            return password_file.read_text().rstrip("\n")
        except OSError as exc:
            raise ConfigError(
                f"{section}.keystore_password_file: cannot read {password_file}: {exc}"
            ) from exc
    raise ConfigError(
        f"no keystore password: set {section}.keystore_password_file, "
        f"or TRITONFLEET_{section.upper()}_KEYSTORE_PASSWORD in the environment"
    )
