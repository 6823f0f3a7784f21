"""Sign-in with an Ethereum address, and the API keys it earns.

A user proves they own an address by signing a one-time challenge with it. The challenge is an
EIP-4361 ("Sign-In with Ethereum") message, which wallets sign as an EIP-191 personal message,
so both kinds of client are served by one verification. No private key ever reaches us.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_address, to_checksum_address

from tritonfleet.payments.errors import PaymentsError

API_KEY_PREFIX = "tf_"
KEY_ID_CHARS = 16


class SignInError(PaymentsError):
    """Why a sign-in was refused.

    SignInError (401)
    ├── BadAddress (400)          not an Ethereum address
    └── ChallengeFailed (401)     no live challenge for the address, or a wrong signature
    """

    status = 401


class BadAddress(SignInError):
    status = 400


class ChallengeFailed(SignInError):
    status = 401


def new_api_key() -> tuple[str, str]:
    """A fresh API key and the hash we store in its place."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_api_key(key)


def hash_api_key(key: str) -> str:
    # A key carries 256 random bits, so a fast hash is enough: no dictionary can guess one,
    # and the gateway can check a key per request without a slow KDF.
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(key_hash: str) -> str:
    """Names a key in listings and usage without revealing enough of its hash to matter."""
    return key_hash[:KEY_ID_CHARS]


def checksum(address: str) -> str:
    if not is_address(address):
        raise BadAddress(f"not an Ethereum address: {address!r}")
    return str(to_checksum_address(address))


@dataclass(frozen=True)
class Challenge:
    address: str
    nonce: str
    message: str
    expires_at: float


class ChallengeStore:
    """One-time challenges, in memory: each is good for one sign-in within `ttl_s`."""

    def __init__(
        self,
        domain: str,
        uri: str,
        chain_id: int,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.domain = domain
        self.uri = uri
        self.chain_id = chain_id
        self.ttl_s = ttl_s
        self.clock = clock
        self._open: dict[str, Challenge] = {}

    def issue(self, address: str) -> Challenge:
        address = checksum(address)
        self._forget_expired()
        now = self.clock()
        nonce = secrets.token_hex(16)
        challenge = Challenge(address, nonce, self._message(address, nonce, now), now + self.ttl_s)
        self._open[nonce] = challenge
        return challenge

    def verify(self, address: str, message: str, signature: str) -> str:
        """The checksummed address, once the signature over a live challenge proves it; the
        challenge is used up either way, so a signature cannot be replayed."""
        address = checksum(address)
        challenge = next((c for c in self._open.values() if c.message == message), None)
        if challenge is None or challenge.address != address or challenge.expires_at < self.clock():
            raise ChallengeFailed("no live challenge for this address and message; ask for a new one")
        del self._open[challenge.nonce]
        try:
            signer = Account.recover_message(encode_defunct(text=message), signature=signature)
        except (ValueError, TypeError) as exc:
            raise ChallengeFailed(f"malformed signature: {exc}") from exc
        if signer != address:
            raise ChallengeFailed("the signature was not made by this address")
        return address

    def _message(self, address: str, nonce: str, now: float) -> str:
        issued, expires = _iso(now), _iso(now + self.ttl_s)
        return (
            f"{self.domain} wants you to sign in with your Ethereum account:\n{address}\n\n"
            "Sign in to TritonFleet to receive an API key for pay-per-inference.\n\n"
            f"URI: {self.uri}\nVersion: 1\nChain ID: {self.chain_id}\nNonce: {nonce}\n"
            f"Issued At: {issued}\nExpiration Time: {expires}"
        )

    def _forget_expired(self) -> None:
        now = self.clock()
        for nonce in [n for n, c in self._open.items() if c.expires_at < now]:
            del self._open[nonce]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
