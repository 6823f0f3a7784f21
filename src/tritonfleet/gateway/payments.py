"""The gateway's paid path: authenticate the API key, hold the price, charge on success.

Per request everything happens in memory (key lookup, price, the CreditBook's check); the only
I/O is the durable charge of a successful inference, group-committed with the charges of the
requests around it. A background refresh brings the book in step with the ledger (other
gateways' charges, settlements) and the chain (deposits, withdrawals) once per `refresh_s`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from tritonfleet.config import PaymentsConfig
from tritonfleet.gateway.errors import AlreadyCharged, Unavailable
from tritonfleet.payments.chain import Chain, ChainError
from tritonfleet.payments.charge_writer import ChargeWriter
from tritonfleet.payments.credit import CreditBook, CreditSnapshot, Reservation
from tritonfleet.payments.errors import LedgerError
from tritonfleet.payments.ledger import Ledger
from tritonfleet.payments.money import Credit
from tritonfleet.payments.records import NewCharge
from tritonfleet.payments.signin import hash_api_key, key_id_of

log = logging.getLogger(__name__)

REFRESH_S = 1.0


class Unauthorized(Exception):
    status = 401


@dataclass(frozen=True)
class Caller:
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
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_forever(), name="paid path refresh")

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        await self.writer.aclose()

    def caller(self, authorization: str | None) -> Caller:
        """The account and key id of a valid, unrevoked API key."""
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
        key_hash = hash_api_key(key.strip())
        account = self._accounts_by_key_hash.get(key_hash)
        if account is None:
            raise Unauthorized("unknown or revoked API key")
        return Caller(account, key_id_of(key_hash))

    def authenticate(self, authorization: str | None) -> str:
        """The account of a valid, unrevoked API key."""
        return self.caller(authorization).account

    def price(self, model: str, version: str | None) -> Credit:
        prices = self.config.prices
        if version is not None and f"{model}:{version}" in prices:
            return Credit(prices[f"{model}:{version}"])
        return Credit(prices.get(model, self.config.default_price))

    def reserve(self, account: str, request_id: str, model: str, version: str | None) -> Reservation:
        return self.book.reserve(account, request_id, self.price(model, version))

    async def charge(
        self, reservation: Reservation, model: str, version: str | None, key_id: str = ""
    ) -> Charged:
        """Durably charge a served request, once per request id.

        The answer is withheld when the charge is not new: AlreadyCharged (409) for a request id
        charged before (a request served and charged once is not served again for free, nor
        charged twice), Unavailable (503) when the ledger cannot record it (a retry with the
        same request id is then charged at most once).
        """
        try:
            new = await self.writer.commit(
                NewCharge(
                    reservation.request_id,
                    reservation.account,
                    model,
                    version or "",
                    reservation.amount,
                    key_id,
                )
            )
        except LedgerError as exc:
            self.book.release(reservation)
            raise Unavailable(f"the charge could not be recorded, try again: {exc}") from exc
        except BaseException:
            self.book.release(reservation)
            raise
        if not new:
            self.book.release(reservation)
            raise AlreadyCharged(
                f"request id '{reservation.request_id}' was charged already, for an answer served "
                "before; send a new X-Request-ID for a new inference"
            )
        self.book.commit(reservation)
        self._committed_since_read[reservation.account] += reservation.amount
        return Charged(reservation.amount, self.book.available(reservation.account))

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
            await asyncio.sleep(REFRESH_S)
            try:
                await self.refresh()
            except Exception:
                log.warning("paid path refresh failed; retrying", exc_info=True)
