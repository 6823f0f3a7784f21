"""The development account of `make up`: a user of the local chain with credit and an API key.

It goes through the same steps as any user: an address of its own (kept in an encrypted
keystore, never as plain text), credit from the dev faucet, and an API key earned by signing
the token manager's challenge. The key lands in `.tritonfleet/dev.env` for scripts to source.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

DEV_ENV_FILE = "dev.env"
KEYSTORE_FILE = "dev-account.json"
PASSWORD_FILE = "dev-account.password"
# Enough for a long afternoon of demo requests at the default prices.
DEV_CREDIT = 100_000


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def dev_user(state_dir: Path) -> LocalAccount:
    """The dev account, created on first use and kept encrypted under `state_dir`."""
    keystore, password_file = state_dir / KEYSTORE_FILE, state_dir / PASSWORD_FILE
    if not keystore.exists():
        password = secrets.token_urlsafe(24)
        _write_private(password_file, password)
        _write_private(keystore, json.dumps(Account.encrypt(Account.create().key, password)))
    account: LocalAccount = Account.from_key(
        Account.decrypt(json.loads(keystore.read_text()), password_file.read_text())
    )
    return account


def ensure_dev_key(state_dir: Path, token_manager_url: str) -> tuple[str, str]:
    """(address, API key) of the dev account, topped up and signed in; the key is reused while valid."""
    user = dev_user(state_dir)
    with httpx.Client(base_url=token_manager_url, timeout=60) as client:
        key = _saved_key(state_dir)
        if key is None or client.get("/v1/balance", headers=_bearer(key)).status_code == 401:
            key = _sign_in(client, user)
            _write_private(state_dir / DEV_ENV_FILE, f"TRITONFLEET_API_KEY={key}\n")
        balance = client.get("/v1/balance", headers=_bearer(key))
        if balance.status_code != 200 or balance.json()["available"] < DEV_CREDIT // 10:
            topped = client.post("/v1/faucet", json={"address": user.address, "amount": DEV_CREDIT})
            topped.raise_for_status()
    return user.address, key


def _sign_in(client: httpx.Client, user: LocalAccount) -> str:
    challenge = client.post("/v1/auth/challenge", json={"address": user.address})
    challenge.raise_for_status()
    message = challenge.json()["message"]
    signature = Account.sign_message(encode_defunct(text=message), user.key).signature.to_0x_hex()
    verified = client.post(
        "/v1/auth/verify",
        json={"address": user.address, "message": message, "signature": signature, "label": "make up"},
    )
    verified.raise_for_status()
    return str(verified.json()["api_key"])


def _saved_key(state_dir: Path) -> str | None:
    try:
        line = (state_dir / DEV_ENV_FILE).read_text().strip()
    except OSError:
        return None
    return line.partition("=")[2] or None


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
