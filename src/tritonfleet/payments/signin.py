"""Sign-in with an Ethereum address, and the API keys it earns.

A user proves they own an address by signing a one-time challenge with it. The challenge is an
EIP-4361 ("Sign-In with Ethereum") message, which wallets sign as an EIP-191 personal message,
so both kinds of client are served by one verification. No private key ever reaches us.

The message names the origin the user signs in at (the web frontend's, as their browser shows
it), so that a wallet can warn when a page of another site asks for it; a message for another
origin is refused, and so is a request that a browser says comes from a page of another origin.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.messages import defunct_hash_message, encode_defunct
from eth_keys.exceptions import BadSignature
from eth_utils import is_address, to_checksum_address
from eth_utils.exceptions import ValidationError
from hexbytes import HexBytes

from tritonfleet.payments.errors import PaymentsError

API_KEY_PREFIX = "tf_"
KEY_ID_CHARS = 16
# The nonce line of our own messages: it finds a challenge without looking at any other.
NONCE_LINE = re.compile(r"^Nonce: (\w+)$", re.MULTILINE)
# The lines that say where and on which chain a message signs in.
DOMAIN_LINE = re.compile(r"\A(\S+) wants you to sign in with your Ethereum account:\n")
URI_LINE = re.compile(r"^URI: (.*)$", re.MULTILINE)
CHAIN_LINE = re.compile(r"^Chain ID: (.*)$", re.MULTILINE)


class SignInError(PaymentsError):
    """Why a sign-in was refused.

    SignInError (401)
    ├── BadAddress (400)          not an Ethereum address
    ├── ChallengeFailed (401)     no live challenge for the address, one for another chain, or a
    │   │                         malformed signature
    │   └── NoKeySigned (401)     no signature of the address's key: a contract wallet's may still
    │                             be (EIP-1271), which only the chain can tell
    ├── ForeignOrigin (403)       a message for another origin than this service's, or a request
    │                             from a page of another origin (its Origin header)
    └── ChallengesFull (503)      as many sign-ins under way as the store holds; comes with
                                  Retry-After
    """

    status = 401


class BadAddress(SignInError):
    status = 400


class ChallengeFailed(SignInError):
    status = 401


class NoKeySigned(ChallengeFailed):
    """What a contract wallet's check needs: the address, and the signature over `digest`."""

    def __init__(self, message: str, address: str, digest: bytes, signature: bytes) -> None:
        super().__init__(message)
        self.address = address
        self.digest = digest
        self.signature = signature


class ForeignOrigin(SignInError):
    status = 403


class ChallengesFull(SignInError):
    status = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


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
    """One-time challenges, in memory: each is good for one sign-in within `ttl_s`.

    At most `max_live` are held. Challenges are found by nonce and expire off a heap ordered by
    expiry, so issuing and verifying cost O(log n) whatever the number of sign-ins under way.
    An address may hold several challenges at once (a wallet open in two tabs).
    """

    def __init__(
        self,
        origin: str,
        chain_id: int,
        ttl_s: float,
        max_live: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # EIP-4361: the domain is the origin's authority (host[:port]), the URI the origin.
        self.origin = origin
        self.domain = urlsplit(origin).netloc
        self.uri = origin
        self.chain_id = chain_id
        self.ttl_s = ttl_s
        self.max_live = max_live
        self.clock = clock
        self._open: dict[str, Challenge] = {}
        # (expires_at, nonce) of every open challenge, and of used ones not yet popped.
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._open)

    def issue(self, address: str) -> Challenge:
        address = checksum(address)
        now = self.clock()
        self._expire(now)
        if len(self._open) >= self.max_live:
            # Refused rather than making room by dropping the oldest: those are users with a
            # wallet prompt open, whose sign-in would then fail for no reason they could see,
            # and a flood of challenges would push out every genuine one. A new user told to
            # retry soon loses less.
            retry_after_s = max(1, math.ceil(self._expiry[0][0] - now))
            raise ChallengesFull(
                f"{len(self._open)} sign-ins are under way, as many as this service holds; "
                f"retry in {retry_after_s} s",
                retry_after_s,
            )
        nonce = secrets.token_hex(16)
        challenge = Challenge(address, nonce, self._message(address, nonce, now), now + self.ttl_s)
        self._open[nonce] = challenge
        heapq.heappush(self._expiry, (challenge.expires_at, nonce))
        return challenge

    def check_origin(self, origin: str | None) -> None:
        """Browsers name the origin of the page that sends a POST: a sign-in that a page of
        another site sends (relaying our challenge to its visitor's wallet) is refused.
        Clients that are no browser send none."""
        if origin is not None and origin != self.origin:
            raise ForeignOrigin(
                f"a sign-in from a page at {origin[:100]!r}; this service signs in at {self.origin} only"
            )

    def verify(self, address: str, message: str, signature: str) -> str:
        """The checksummed address, once the signature over a live challenge proves it; the
        challenge is used up either way, so a signature cannot be replayed.

        Raises NoKeySigned when the signature is not the address's key's: a contract wallet
        (EIP-1271) signs otherwise, and only the chain can tell."""
        address = checksum(address)
        self._check_for_us(message)
        nonce = NONCE_LINE.search(message)
        challenge = None if nonce is None else self._open.get(nonce[1])
        if (
            challenge is None
            or challenge.message != message
            or challenge.address != address
            or challenge.expires_at < self.clock()
        ):
            raise ChallengeFailed("no live challenge for this address and message; ask for a new one")
        self._use(challenge.nonce)
        try:
            signed = bytes(HexBytes(signature))
        except (ValueError, TypeError) as exc:
            raise ChallengeFailed(f"malformed signature: not hex ({exc})") from exc
        digest = bytes(defunct_hash_message(text=message))
        try:
            signer = Account.recover_message(encode_defunct(text=message), signature=signed)
        # Each is what some malformed signature raises: a short one, an odd length, junk.
        except (ValueError, TypeError, IndexError, ValidationError, BadSignature) as exc:
            raise NoKeySigned(f"malformed signature: {exc}", address, digest, signed) from exc
        if signer != address:
            raise NoKeySigned("the signature was not made by this address", address, digest, signed)
        return address

    def _check_for_us(self, message: str) -> None:
        """Refuse a message that names another origin or chain than ours, saying which. (One that
        names none matches no challenge either, and is refused as such.)"""
        domain, uri, chain_id = (line.search(message) for line in (DOMAIN_LINE, URI_LINE, CHAIN_LINE))
        for named, ours in ((domain, self.domain), (uri, self.uri)):
            if named is not None and named[1] != ours:
                raise ForeignOrigin(
                    f"this message signs in at {named[1][:100]!r}, not at {ours}: made for another "
                    "site; ask this service for a challenge"
                )
        if chain_id is not None and chain_id[1] != str(self.chain_id):
            raise ChallengeFailed(
                f"this message is for chain {chain_id[1][:20]!r}; this service signs in on chain "
                f"{self.chain_id}"
            )

    def _message(self, address: str, nonce: str, now: float) -> str:
        issued, expires = _iso(now), _iso(now + self.ttl_s)
        return (
            f"{self.domain} wants you to sign in with your Ethereum account:\n{address}\n\n"
            "Sign in to TritonFleet to receive an API key for pay-per-inference.\n\n"
            f"URI: {self.uri}\nVersion: 1\nChain ID: {self.chain_id}\nNonce: {nonce}\n"
            f"Issued At: {issued}\nExpiration Time: {expires}"
        )

    def _expire(self, now: float) -> None:
        """Pop expired challenges, and used ones, off the top of the heap, until its top is the
        live challenge that expires first."""
        while self._expiry:
            expires_at, nonce = self._expiry[0]
            if expires_at >= now and nonce in self._open:
                break
            heapq.heappop(self._expiry)
            self._open.pop(nonce, None)
        self._compact()

    def _use(self, nonce: str) -> None:
        del self._open[nonce]
        self._compact()

    def _compact(self) -> None:
        # A used challenge's heap entry stays until it reaches the top. Once such entries
        # outnumber the live ones the heap is rebuilt without them: it stays within twice the
        # store, and each rebuild costs no more than the entries it drops, O(1) amortized.
        if len(self._expiry) > 2 * len(self._open):
            self._expiry = [(c.expires_at, c.nonce) for c in self._open.values()]
            heapq.heapify(self._expiry)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
