"""The paid path: one object owns a paid request's life, from its API key to its charge.

    payer = paid.authenticate(authorization)                        ApiKeyRefused (401)
    async with paid.hold(payer, request_id, model, version) as held:  PaymentRequired (402),
        answer = ...serve...                                          RequestIdInFlight (409)
        if answer succeeded:
            charged = await held.charge()                             AlreadyCharged (409),
    # leaving the block any other way frees the held price            Unavailable (503)

HTTP, gRPC unary calls and gRPC streams all pay through here, and each front only renders the
errors: their texts and figures are written once, below. A stream holds the price of each of
its requests as it sends it on, and charges it before relaying its first output.

Per request everything happens in memory (key lookup, price, the CreditBook's check); the only
I/O is the durable charge of a successful inference, group-committed with the charges of the
requests around it. A background refresh brings the book in step with the ledger (other
gateways' charges, settlements) and the chain (deposits, withdrawals) every `refresh_s`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType

from tritonfleet.config import FleetConfig, PaymentsConfig
from tritonfleet.gateway.errors import (
    AlreadyCharged,
    ApiKeyRefused,
    PaymentRequired,
    RequestIdInFlight,
    Unavailable,
)
from tritonfleet.lifecycle import close_on_exit
from tritonfleet.payments.chain.client import Chain, ChainError, connect
from tritonfleet.payments.credit import CreditBook, CreditSnapshot, Reservation
from tritonfleet.payments.errors import DuplicateReservation, InsufficientCredit, LedgerError
from tritonfleet.payments.ledger.database import default_ledger_url
from tritonfleet.payments.ledger.records import NewCharge
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.ledger.writer import ChargeWriter
from tritonfleet.payments.money import Credit
from tritonfleet.payments.signin import hash_api_key, key_id_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Payer:
    """Whoever presented a valid, unrevoked API key: the account it pays from, and which key."""

    account: str
    key_id: str


@dataclass(frozen=True)
class Charged:
    amount: Credit
    remaining: Credit


@dataclass(frozen=True)
class ChainView:
    block: int
    deposits: dict[str, Credit]
    pending_withdrawals: dict[str, Credit]


_NO_VIEW = ChainView(-1, {}, {})


class Hold:
    """The price of one request, held from its payer's credit until it is charged or released.

    Charged at most once; `release` after a charge, or a second time, does nothing. As an async
    context manager it releases on exit whatever was not charged.
    """

    def __init__(
        self, paid: PaidPath, payer: Payer, reservation: Reservation, model: str, version: str
    ) -> None:
        self.paid = paid
        self.payer = payer
        self.reservation = reservation
        self.model = model
        self.version = version
        self.charged: Charged | None = None
        self._open = True

    async def charge(self) -> Charged:
        """Durably charge the served request, once per request id.

        Raises AlreadyCharged for a request id charged before (a request served and charged
        once is not served again for free, nor charged twice), Unavailable when the ledger
        cannot record it (a retry with the same request id is then charged at most once); the
        answer is to be withheld then, and the hold is released.
        """
        if self.charged is not None:
            return self.charged
        if not self._open:
            raise RuntimeError(f"request {self.reservation.request_id}: charged after its hold was released")
        new = await self._commit()
        book = self.paid.book
        if not new:
            self.release()
            raise AlreadyCharged(
                f"request id '{self.reservation.request_id}' was charged already, for an answer served "
                "before; send a new X-Request-ID for a new inference"
            )
        self._open = False
        book.commit(self.reservation)
        self.paid.committed(self.reservation)
        self.charged = Charged(self.reservation.amount, book.available(self.payer.account))
        return self.charged

    def release(self) -> None:
        if self._open:
            self._open = False
            self.paid.book.release(self.reservation)

    async def __aenter__(self) -> Hold:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    async def _commit(self) -> bool:
        reservation = self.reservation
        charge = NewCharge(
            reservation.request_id,
            reservation.account,
            self.model,
            self.version,
            reservation.amount,
            self.payer.key_id,
        )
        try:
            return await self.paid.writer.commit(charge)
        except LedgerError as exc:
            self.release()
            raise Unavailable(f"the charge could not be recorded, try again: {exc}") from exc
        except BaseException:
            self.release()
            raise


class PaidPath:
    """API keys, prices and credit for one gateway process."""

    def __init__(
        self, config: PaymentsConfig, ledger_url: str, ledger: Ledger, chain: Chain, top_up_hint: str
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.chain = chain
        self.top_up_hint = top_up_hint
        self.book = CreditBook()
        self.writer = ChargeWriter(ledger_url)
        self._accounts_by_key_hash: dict[str, str] = {}
        # Charges committed here since the ledger was last read, added to what it says: the
        # read may have missed them, and counting a charge twice only errs on the safe side.
        self._committed_since_read: Counter[str] = Counter()
        self._chain_view = _NO_VIEW
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.writer.start()
        try:
            await self.refresh()
        except BaseException:
            await self.writer.aclose()
            raise
        self._refresher = asyncio.create_task(self._refresh_forever(), name="paid path refresh")

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        await self.writer.aclose()

    def authenticate(self, authorization: str | None) -> Payer:
        """The payer of `Authorization: Bearer <API key>`; ApiKeyRefused without a valid key."""
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise ApiKeyRefused("an API key is required: send 'Authorization: Bearer <key>'")
        key_hash = hash_api_key(key.strip())
        account = self._accounts_by_key_hash.get(key_hash)
        if account is None:
            raise ApiKeyRefused("unknown or revoked API key")
        return Payer(account, key_id_of(key_hash))

    def price(self, model: str, version: str | None) -> Credit:
        prices = self.config.prices
        if version is not None and f"{model}:{version}" in prices:
            return Credit(prices[f"{model}:{version}"])
        return Credit(prices.get(model, self.config.default_price))

    def hold(self, payer: Payer, request_id: str, model: str, version: str | None) -> Hold:
        """Hold the price of one request from the payer's credit."""
        price = self.price(model, version)
        try:
            reservation = self.book.reserve(payer.account, request_id, price)
        except InsufficientCredit as exc:
            raise self.payment_required(exc, model) from exc
        except DuplicateReservation as exc:
            raise RequestIdInFlight(
                f"request id '{request_id}' is already being served; send a new X-Request-ID for a "
                "new inference"
            ) from exc
        return Hold(self, payer, reservation, model, version or "")

    def payment_required(self, exc: InsufficientCredit, model: str) -> PaymentRequired:
        """402 with what is missing and how to top up, so that a script can act on it."""
        refused = PaymentRequired(
            f"insufficient credit: model '{model}' costs {exc.price}, "
            f"{exc.available} available, {exc.missing} missing. {self.top_up_hint}"
        )
        refused.figures = {
            "price": exc.price,
            "available": exc.available,
            "missing": exc.missing,
            "top_up": self.top_up_hint,
        }
        return refused

    def committed(self, reservation: Reservation) -> None:
        self._committed_since_read[reservation.account] += reservation.amount

    def snapshot(self, account: str) -> CreditSnapshot:
        return self.book.snapshot(account)

    async def refresh(self) -> None:
        """Reload keys and unsettled sums from the ledger, then deposits from the chain, and
        apply them together.

        The ledger is read before the chain, so that a batch settling in between is counted
        against the user twice for a moment (safe), never not at all. Both are applied at once,
        with no await in between: a new unsettled sum (a batch settled, its charges gone) next to
        the old deposit (from before that batch) would free the settled amount a second time.
        """
        self._committed_since_read.clear()
        keys, unsettled = await asyncio.to_thread(self._read_ledger)
        try:
            view: ChainView | None = await asyncio.to_thread(self._read_chain, set(keys.values()))
        except ChainError as exc:
            # Keep serving within each user's last known credit; charges queue in the ledger.
            log.warning("chain unreachable; using last known deposits", extra={"error": str(exc)})
            view = None
        self._accounts_by_key_hash = keys
        if view is None:
            # Without the deposits, new unsettled sums could free a settlement not yet seen.
            return
        for account, deposit in view.deposits.items():
            self.book.set_deposit(account, deposit)
        for account, pending in view.pending_withdrawals.items():
            self.book.set_pending_withdrawal(account, pending)
        accounts = {*unsettled, *keys.values()}
        self.book.load_unsettled(
            {a: Credit(unsettled.get(a, 0) + self._committed_since_read[a]) for a in accounts}
        )

    def _read_ledger(self) -> tuple[dict[str, str], Mapping[str, Credit]]:
        return self.ledger.all_active_keys(), self.ledger.unsettled_by_account()

    def _read_chain(self, accounts: set[str]) -> ChainView:
        """Deposits and pending withdrawals; read again only once a block has been added, since
        nothing on chain moves between blocks (two calls per account are the costly part)."""
        block = self.chain.block_number()
        known = self._chain_view
        if block == known.block and accounts <= known.deposits.keys():
            return known
        deposits = {account: self.chain.deposit_of(account) for account in accounts}
        pending = {account: self.chain.pending_withdrawal_of(account).amount for account in accounts}
        # Read at `block` or later: a later block only makes the next refresh read again.
        self._chain_view = ChainView(block, deposits, pending)
        return self._chain_view

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.refresh_s)
            try:
                await self.refresh()
            except Exception:
                log.warning("paid path refresh failed; retrying", exc_info=True)


async def open_paid_path(config: FleetConfig, stack: AsyncExitStack) -> PaidPath:
    """The paid path on the configured ledger and chain, started; closed with the stack."""
    ledger_url = default_ledger_url(config)
    ledger = Ledger.open(ledger_url)
    close_on_exit(stack, "ledger", ledger.close)
    chain = connect(config, signing=False)
    vault, chain_id = chain.deployment.vault, config.chain.chain_id
    hint = f"Deposit credit into the PaymentVault at {vault} on chain {chain_id}"
    if config.chain.dev:
        manager = config.token_manager
        hint += f", or on this development chain: POST http://{manager.host}:{manager.port}/v1/faucet"
    paid = PaidPath(config.payments, ledger_url, ledger, chain, hint + ".")
    await paid.start()
    close_on_exit(stack, "paid path", paid.aclose)
    return paid
