"""What the token manager does behind its endpoints: keys, balances, usage, the dev faucet.

Methods that touch the ledger or the chain block; the endpoints run them in a thread. Sign-in's
challenge methods do not, and run on the event loop, so that checking a challenge and using it
up happen with no other request in between: a signature cannot be replayed by a racing copy.
Only then is a contract wallet asked, in a thread, whether the signature is its own.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from tritonfleet.config import FleetConfig
from tritonfleet.payments.chain.client import Chain
from tritonfleet.payments.credit import CreditSnapshot
from tritonfleet.payments.ledger.records import ApiKey, Batch, Charge, UsageCursor
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.money import Credit
from tritonfleet.payments.signin import (
    Challenge,
    ChallengesFull,
    ChallengeStore,
    NoKeySigned,
    SignInError,
    checksum,
    hash_api_key,
    key_id_of,
    new_api_key,
)
from tritonfleet.token_manager.errors import (
    BadParameter,
    FaucetClosed,
    KeyNotFound,
    SignInRequired,
    TooManySignIns,
    chain_errors,
)
from tritonfleet.token_manager.metrics import TokenManagerMetrics
from tritonfleet.token_manager.signin_limit import SignInRateLimit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaucetDeposit:
    address: str
    amount: Credit
    deposit: Credit
    tx_hash: str


@dataclass(frozen=True)
class KeyHolder:
    """Whoever presented a valid API key; the key stays out of the repr, and so out of logs."""

    account: str
    key_hash: str = field(repr=False)
    api_key: str = field(repr=False)


class TokenManager:
    def __init__(
        self,
        config: FleetConfig,
        ledger: Ledger,
        chain: Chain,
        challenges: ChallengeStore,
        sign_in_limit: SignInRateLimit,
        metrics: TokenManagerMetrics,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.chain = chain
        self.challenges = challenges
        self.sign_in_limit = sign_in_limit
        self.metrics = metrics
        # The operator's nonce is read per transaction: two faucet calls at once would collide.
        self._faucet_lock = threading.Lock()

    # Sign-in (on the event loop)

    def admit_sign_in(self, client: str, origin: str | None) -> None:
        """Count one sign-in request of the client IP's against its rate, then refuse it if a
        browser sent it from a page of another origin than ours."""
        try:
            self.sign_in_limit.take(client)
        except TooManySignIns:
            self.metrics.sign_ins.labels("rate_limited").inc()
            raise
        try:
            self.challenges.check_origin(origin)
        except SignInError:
            self.metrics.sign_ins.labels("refused").inc()
            raise

    def challenge(self, address: str) -> Challenge:
        try:
            return self.challenges.issue(address)
        except ChallengesFull:
            self.metrics.sign_ins.labels("challenges_full").inc()
            raise

    async def verify(self, address: str, message: str, signature: str) -> str:
        """The address, once the signature proves it: its key's (ECDSA recovery), or failing
        that the contract wallet's at the address (EIP-1271)."""
        try:
            try:
                return self.challenges.verify(address, message, signature)
            except NoKeySigned as refused:
                if await run_in_threadpool(self._contract_signed, refused):
                    return refused.address
                raise
        except SignInError:
            self.metrics.sign_ins.labels("refused").inc()
            raise

    def _contract_signed(self, refused: NoKeySigned) -> bool:
        with chain_errors(
            self.chain.endpoint, "whether a contract wallet signed is unknown; try again later"
        ):
            return self.chain.contract_signed(refused.address, refused.digest, refused.signature)

    # Keys (blocking)

    def issue_key(self, account: str, label: str) -> tuple[str, ApiKey]:
        api_key, key_hash = new_api_key()
        key = self.ledger.add_api_key(key_hash, account, label)
        self.metrics.sign_ins.labels("issued").inc()
        log.info("API key issued", extra={"account": account})
        return api_key, key

    def authenticate(self, api_key: str) -> KeyHolder:
        key_hash = hash_api_key(api_key)
        account = self.ledger.account_for_key(key_hash)
        if account is None:
            raise SignInRequired("unknown or revoked API key")
        return KeyHolder(account, key_hash, api_key)

    def keys(self, account: str) -> list[ApiKey]:
        return self.ledger.api_keys(account)

    def revoke(self, account: str, key_id: str) -> ApiKey:
        """Revoke one of the account's keys; revoking a revoked key changes nothing."""
        key = self._key(account, key_id)
        if key.active and self.ledger.revoke_api_key(key.key_hash):
            self.metrics.revocations.inc()
            log.info("API key revoked", extra={"account": account})
        return self._key(account, key_id)

    def _key(self, account: str, key_id: str) -> ApiKey:
        for key in self.ledger.api_keys(account):
            if key_id_of(key.key_hash) == key_id:
                return key
        raise KeyNotFound(f"this account has no key {key_id!r}")

    # Balance, usage, settlements

    async def balance(self, caller: KeyHolder) -> CreditSnapshot:
        return await run_in_threadpool(self._balance, caller.account)

    def _balance(self, account: str) -> CreditSnapshot:
        """Deposit and pending withdrawal on chain; unsettled charges, and what the gateways'
        credit leases hold (for requests in flight or about to come), in the ledger."""
        with chain_errors(self.chain.endpoint):
            deposit = self.chain.deposit_of(account)
            pending = self.chain.pending_withdrawal_of(account).amount
        unsettled = self.ledger.totals(account).unsettled
        return CreditSnapshot(account, deposit, pending, unsettled, self.ledger.leased(account))

    def usage(
        self, account: str, limit: int, before: str | None, key_id: str | None = None
    ) -> tuple[list[Charge], str | None]:
        """One page of charges, newest first, and the cursor of the next page if there is one."""
        cursor = None if before is None else decode_cursor(before)
        # One row more than asked tells whether another page follows.
        page = self.ledger.usage(account, limit + 1, cursor, key_id)
        if len(page) <= limit:
            return page, None
        return page[:limit], encode_cursor(page[limit - 1].cursor)

    def settlements(self, account: str) -> list[Batch]:
        return self.ledger.settlements(account)

    # Dev faucet (blocking)

    def faucet(self, address: str, amount: Credit) -> FaucetDeposit:
        """Mint `amount` to the operator and deposit it for `address`; waits for confirmation."""
        if not self.config.chain.dev:
            raise FaucetClosed("the faucet serves development chains only, and chain.dev is false here")
        address = checksum(address)
        with self._faucet_lock, chain_errors(self.chain.endpoint):
            self.chain.wait_confirmed(self.chain.mint(self.chain.operator.address, amount))
            tx_hash = self.chain.deposit_for(address, amount)
            self.chain.wait_confirmed(tx_hash)
            deposit = self.chain.deposit_of(address)
        self.metrics.faucet_credit.inc(amount)
        log.info("faucet deposit", extra={"address": address, "amount": amount, "tx_hash": tx_hash})
        return FaucetDeposit(address, amount, deposit, tx_hash)


def encode_cursor(cursor: UsageCursor) -> str:
    # Opaque to clients, so the ledger may change its paging key without breaking them.
    return base64.urlsafe_b64encode(json.dumps(list(cursor)).encode()).decode()


def decode_cursor(text: str) -> UsageCursor:
    try:
        at_s, request_id = json.loads(base64.urlsafe_b64decode(text.encode()))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadParameter("`before` is not a cursor from a previous page") from exc
    if not isinstance(at_s, int | float) or not isinstance(request_id, str):
        raise BadParameter("`before` is not a cursor from a previous page")
    return float(at_s), request_id
