"""The paid path: one object owns a paid request's life, from its API key to its charge.

    payer = paid.authenticate(authorization)                          ApiKeyRefused (401)
    async with paid.hold(payer, request_id, model, version) as held:  PaymentRequired (402),
        answer = ...serve...                                          RequestIdInFlight (409),
        if answer succeeded:                                          AlreadyCharged (409),
            charged = await held.charge()                             Unavailable (503)
    # leaving the block any other way frees the held price

HTTP, gRPC unary calls and gRPC streams all pay through here, and each front only renders the
errors: their texts and figures are written once, below. A stream holds the price of each of
its requests as it sends it on, and charges it before relaying its first output.

Credit comes in leases. The ledger grants this gateway a slice of an account's credit in one
atomic statement that counts every gateway's live leases (`Ledger.take_lease`), and requests
are then held against the slice in memory; the next slice is taken when it runs out, sized on
what the account spent lately. The only I/O per request is the durable charge of a successful
inference, group-committed with the charges around it. Background loops renew the leases (one
statement), give back what idle accounts hold, reload API keys, and read the chain: keys never
wait for the chain, so a new or revoked key takes effect within `refresh_s` whatever the chain
does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType

from tritonfleet.config import FleetConfig, PaymentsConfig
from tritonfleet.credentials import MalformedCredentials, presented_secret
from tritonfleet.gateway.errors import (
    AlreadyCharged,
    ApiKeyRefused,
    PaymentRequired,
    RequestIdInFlight,
    Unavailable,
)
from tritonfleet.lifecycle import close_on_exit
from tritonfleet.payments.chain.client import Chain, ChainError, connect
from tritonfleet.payments.chain.records import ChainBalances
from tritonfleet.payments.credit import CreditBook, Reservation
from tritonfleet.payments.errors import DuplicateReservation, InsufficientCredit, LedgerError
from tritonfleet.payments.ledger.database import default_ledger_url
from tritonfleet.payments.ledger.records import NewCharge
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.ledger.writer import ChargeWriter
from tritonfleet.payments.money import Credit
from tritonfleet.payments.signin import hash_api_key, key_id_of

log = logging.getLogger(__name__)

# A lease is used only this long after its last renewal, well inside its time to live, so that
# another gateway whose clock runs ahead never counts it lapsed while it is still spent here.
LEASE_USE_FRACTION = 0.5

# What part of the vault's withdrawal delay an account's oldest unsettled charge may wait
# before the account is served no more.
SETTLE_WITHIN_FRACTION = 0.5

# The highest version of a model the cluster serves, which Triton serves a request without one.
LatestVersion = Callable[[str], str | None]


@dataclass(frozen=True)
class Payer:
    """Whoever presented a valid, unrevoked API key: the account it pays from, and which key."""

    account: str
    key_id: str
    key_hash: str = field(repr=False)


@dataclass(frozen=True)
class Charged:
    amount: Credit
    remaining: Credit


_NO_VIEW = ChainBalances(-1, {}, {})


class Hold:
    """The price of one request, held from its payer's credit until it is charged or released.

    Entering it (or `await reserve()`) holds the price; charged at most once; `release` after
    a charge, or a second time, does nothing. Leaving the block releases what was not charged.
    """

    def __init__(
        self, paid: PaidPath, payer: Payer, request_id: str, model: str, version: str, from_client: bool
    ) -> None:
        self.paid = paid
        self.payer = payer
        self.request_id = request_id
        self.model = model
        self.version = version
        self.from_client = from_client
        self.reservation: Reservation | None = None
        self.charged: Charged | None = None
        self._open = False

    async def reserve(self) -> None:
        """Hold the price: PaymentRequired, RequestIdInFlight, AlreadyCharged (an id the client
        chose that was charged before: it reaches no node) or Unavailable (the ledger)."""
        self.reservation = await self.paid.reserve(self)
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
        if not self._open or self.reservation is None:
            raise RuntimeError(f"request {self.request_id}: charged while not held")
        new = await self._commit(self.reservation)
        if not new:
            self.release()
            raise self.paid.already_charged(self.request_id)
        self._open = False
        self.paid.book.commit(self.reservation)
        self.charged = Charged(self.reservation.amount, self.paid.remaining(self.payer.account))
        return self.charged

    def release(self) -> None:
        if self._open and self.reservation is not None:
            self._open = False
            self.paid.book.release(self.reservation)

    async def __aenter__(self) -> Hold:
        await self.reserve()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    async def _commit(self, reservation: Reservation) -> bool:
        charge = NewCharge(
            self.request_id,
            reservation.account,
            self.model,
            self.version,
            reservation.amount,
            self.payer.key_id,
            reservation.lease_id,
        )
        try:
            written = self.paid.writer.submit(charge)
        except LedgerError as exc:
            self.release()
            raise _unrecorded(exc) from exc
        try:
            async with asyncio.timeout(self.paid.config.charge_timeout_s):
                return await asyncio.shield(written)
        except TimeoutError as exc:
            # It may still be recorded: the price stays held until the writer answers, so the
            # lease never frees it while it may be charged.
            self._settle_when_answered(written)
            raise Unavailable(
                "the charge was not confirmed in time; a retry with the same X-Request-ID is "
                "charged at most once"
            ) from exc
        except LedgerError as exc:
            self.release()
            raise _unrecorded(exc) from exc
        except BaseException:
            # Cancelled: the writer still answers for the charge, which settles the hold.
            self._settle_when_answered(written)
            raise

    def _settle_when_answered(self, written: asyncio.Future[bool]) -> None:
        """Leave the hold to the writer's answer, for a request that stopped waiting for it."""
        reservation, book = self.reservation, self.paid.book
        assert reservation is not None
        self._open = False  # `release` is no longer this request's to call

        def settle(answer: asyncio.Future[bool]) -> None:
            if not answer.cancelled() and answer.exception() is None and answer.result():
                book.commit(reservation)
            else:
                book.release(reservation)

        written.add_done_callback(settle)


def _unrecorded(exc: LedgerError) -> Unavailable:
    """The client learns that it may retry; the database's own words (which may name its host,
    user or schema) go to the log only."""
    log.warning("a charge could not be recorded", extra={"error": str(exc)})
    return Unavailable("the charge could not be recorded, try again")


class PaidPath:
    """API keys, prices and credit leases for one gateway process."""

    def __init__(
        self,
        config: PaymentsConfig,
        ledger_url: str,
        ledger: Ledger,
        chain: Chain,
        top_up_hint: str,
        latest_version: LatestVersion = lambda _model: None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.chain = chain
        self.top_up_hint = top_up_hint
        self.latest_version = latest_version
        self.book = CreditBook()
        self.writer = ChargeWriter(ledger_url, ledger_timeout_s=config.ledger_timeout_s)
        # Who holds this process's leases in the ledger: unique to the process.
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._accounts_by_key_hash: dict[str, str] = {}
        self._chain_view = _NO_VIEW
        # Leases are used until then (time.monotonic), unless renewed meanwhile.
        self._leases_usable_until = 0.0
        self._taking: dict[str, asyncio.Lock] = {}
        # When a grant last found the account with nothing free, and what it had: requests
        # that waited for that grant are refused at once rather than each ask the ledger again.
        self._exhausted_at: dict[str, float] = {}
        self._free_in_ledger: dict[str, Credit] = {}
        self._slice: dict[str, Credit] = {}
        self._waiting: Counter[str] = Counter()
        # Charges must settle well within the vault's withdrawal delay, or a user could withdraw
        # a deposit that charges for served inferences still count on.
        self._settle_within_s = chain.deployment.withdrawal_delay_s * SETTLE_WITHIN_FRACTION
        self._loops: list[asyncio.Task[None]] = []
        # The chain's own threads: the loop's read and a new account's, at most one each.
        self._chain_reader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chain read")

    async def start(self) -> None:
        await self.writer.start()
        try:
            await self.refresh_keys()
            await self._renew()
            try:
                await self.read_chain()
            except ChainError as exc:
                # Serving waits for the chain; the loop reads it again.
                log.warning("chain unreachable at start", extra={"error": str(exc)})
        except BaseException:
            await self.writer.aclose()
            raise
        self._loops = [
            asyncio.create_task(self._every(self.refresh_keys), name="API keys"),
            asyncio.create_task(self._every(self._renew), name="credit leases"),
            asyncio.create_task(self._every(self.read_chain), name="chain view"),
        ]

    async def aclose(self) -> None:
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self.writer.aclose()
        # What the leases hold unspent goes back now, rather than when they lapse.
        for account in self.book.accounts():
            await self._give_back(account)
        # A read hung on the chain is left to finish on its own.
        self._chain_reader.shutdown(wait=False, cancel_futures=True)

    def authenticate(self, authorization: str | None) -> Payer:
        """The payer of `Authorization: Bearer <API key>`, or of Basic with the key as the
        password (any user); ApiKeyRefused without a valid key."""
        try:
            key = presented_secret(authorization)
        except MalformedCredentials as exc:
            raise ApiKeyRefused(f"{exc}; send the API key as the password") from None
        if key is None:
            raise ApiKeyRefused(
                "an API key is required: send 'Authorization: Bearer <key>', or Basic with the key "
                "as the password"
            )
        key_hash = hash_api_key(key)
        account = self._accounts_by_key_hash.get(key_hash)
        if account is None:
            raise ApiKeyRefused("unknown or revoked API key")
        return Payer(account, key_id_of(key_hash), key_hash)

    def check_key(self, payer: Payer) -> None:
        """ApiKeyRefused once the payer's key is revoked: a long stream checks at each request."""
        if self._accounts_by_key_hash.get(payer.key_hash) != payer.account:
            raise ApiKeyRefused("the API key was revoked")

    def price(self, model: str, version: str | None) -> Credit:
        prices = self.config.prices
        if version is not None and f"{model}:{version}" in prices:
            return Credit(prices[f"{model}:{version}"])
        return Credit(prices.get(model, self.config.default_price))

    def hold(
        self, payer: Payer, request_id: str, model: str, version: str | None, from_client: bool = False
    ) -> Hold:
        """The hold of one request's price, taken when entered. `from_client`: the client chose
        the request id, so it may have been charged before (the gateway's own ids are new)."""
        # Without a version Triton serves the latest, and that version's price is paid.
        served = version or self.latest_version(model) or ""
        return Hold(self, payer, request_id, model, served, from_client)

    async def reserve(self, held: Hold) -> Reservation:
        account, request_id = held.payer.account, held.request_id
        if self.writer.backlog >= self.config.max_pending_charges:
            raise Unavailable("too many charges are waiting for the ledger; try again shortly")
        if held.from_client and await asyncio.to_thread(self.ledger.charged, account, request_id):
            raise self.already_charged(request_id)
        price = self.price(held.model, held.version or None)
        if time.monotonic() > self._leases_usable_until:
            # Not renewed in time (the ledger is unreachable?): other gateways may count the
            # lease lapsed by now, so its credit is not spent here any more.
            self.book.lapsed(account)
        try:
            return self._reserve(account, request_id, price)
        except InsufficientCredit:
            pass
        asked_at = time.monotonic()
        await self._take_lease(account, price, asked_at)
        try:
            return self._reserve(account, request_id, price)
        except InsufficientCredit as exc:
            available = Credit(exc.available + self._free_in_ledger.get(account, 0))
            raise self.payment_required(InsufficientCredit(account, price, available), held.model) from exc

    def _reserve(self, account: str, request_id: str, price: Credit) -> Reservation:
        try:
            return self.book.reserve(account, request_id, price)
        except DuplicateReservation as exc:
            raise self.in_flight(request_id) from exc

    async def _take_lease(self, account: str, need: Credit, asked_at: float) -> None:
        """Take more of the account's credit from the ledger, one grant at a time per account.

        A grant asks for what the requests waiting for it need, at least `lease_requests`
        prices, or what the account spent over the last two renewals if more.
        """
        self._waiting[account] += 1
        try:
            async with self._taking.setdefault(account, asyncio.Lock()):
                if self.book.free(account) >= need:
                    return  # a grant made while this request waited covers it
                if self._exhausted_at.get(account, -1.0) >= asked_at:
                    return  # a grant that began after this request asked found nothing free
                waiting = max(self._waiting[account], self.config.lease_requests)
                await self._grant(account, Credit(max(self._slice.get(account, 0), need * waiting)))
        finally:
            self._waiting[account] -= 1

    async def _grant(self, account: str, want: Credit) -> None:
        view = self._chain_view
        if account not in view.deposits:
            view = await self._read_account(account)
        started = time.monotonic()
        try:
            grant = await asyncio.to_thread(
                self.ledger.take_lease,
                self.holder,
                account,
                want,
                deposit=view.deposits.get(account, Credit(0)),
                pending_withdrawal=view.pending_withdrawals.get(account, Credit(0)),
                chain_block=view.block,
                ttl_s=self.config.lease_ttl_s,
                lease_id=self.book.snapshot(account).lease_id,
            )
        except Exception as exc:
            log.warning("cannot take a credit lease", extra={"error": str(exc)})
            raise Unavailable("the ledger cannot be reached; try again shortly") from exc
        self.book.granted(account, grant.lease_id, grant.granted)
        self._free_in_ledger[account] = grant.free
        if grant.free == 0 and grant.granted < want:
            self._exhausted_at[account] = started
        oldest = grant.oldest_unsettled_at_s
        if oldest is not None and time.time() - oldest > self._settle_within_s:
            # Charges this old may not settle before the user could withdraw their deposit:
            # serve no more until the settler catches up.
            await self._give_back(account)
            raise Unavailable(
                "this account's charges are waiting for settlement for too long; try again later"
            )

    async def _read_account(self, account: str) -> ChainBalances:
        """The chain view with this account in it: its first request comes before the loop has
        read it (a key issued since)."""
        loop = asyncio.get_running_loop()
        try:
            read = loop.run_in_executor(self._chain_reader, self.chain.balances, [account])
            balances = await asyncio.wait_for(read, self.config.chain_timeout_s)
        except (ChainError, TimeoutError) as exc:
            raise Unavailable("the chain cannot be read to find this account's deposit; try again") from exc
        known = self._chain_view
        if balances.block < known.block:
            # Read before the view: counted as of its own block, which the grant then uses.
            return balances
        view = ChainBalances(
            known.block,
            {**known.deposits, **balances.deposits},
            {**known.pending_withdrawals, **balances.pending_withdrawals},
        )
        self._chain_view = view
        return view

    def in_flight(self, request_id: str) -> RequestIdInFlight:
        return RequestIdInFlight(
            f"request id '{request_id}' is already being served; send a new X-Request-ID for a new inference"
        )

    def already_charged(self, request_id: str) -> AlreadyCharged:
        return AlreadyCharged(
            f"request id '{request_id}' was charged already, for an answer served "
            "before; send a new X-Request-ID for a new inference"
        )

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

    def remaining(self, account: str) -> Credit:
        """What the account can still spend here: its lease, and what the ledger had free at the
        last grant (other gateways' leases are not in it, nor deposits since)."""
        return Credit(self.book.free(account) + self._free_in_ledger.get(account, 0))

    def credit(self, account: str) -> dict[str, int | str | None]:
        """The account as this gateway sees it: its deposit and pending withdrawal in the chain
        view, and its lease here (granted, charged, held by requests in flight, free)."""
        view = self._chain_view
        lease = self.book.snapshot(account)
        return {
            "account": account,
            "chain_block": view.block,
            "deposit": view.deposits.get(account),
            "pending_withdrawal": view.pending_withdrawals.get(account),
            "lease_id": lease.lease_id,
            "granted": lease.granted,
            "charged": lease.charged,
            "reserved": lease.reserved,
            "free": lease.free,
            "available": self.remaining(account),
        }

    async def refresh_keys(self) -> None:
        self._accounts_by_key_hash = await asyncio.to_thread(self.ledger.all_active_keys)

    async def read_chain(self) -> None:
        """Deposits and pending withdrawals of every account with a key, as of one block (one
        call per thousand accounts), in threads of their own: a chain that hangs holds up
        neither the ledger's reads nor the keys."""
        accounts = set(self._accounts_by_key_hash.values())
        loop = asyncio.get_running_loop()
        self._chain_view = await loop.run_in_executor(self._chain_reader, self._read_chain, accounts)

    def _read_chain(self, accounts: set[str]) -> ChainBalances:
        """Read again only once a block has been added, since nothing on chain moves between
        blocks."""
        known = self._chain_view
        if self.chain.block_number() == known.block and accounts <= known.deposits.keys():
            return known
        return self.chain.balances(sorted(accounts))

    async def _renew(self) -> None:
        """Renew this gateway's leases in one statement; size the next slices on what each
        account spent since; give back what idle accounts hold."""
        started = time.monotonic()
        leases = {account: self.book.snapshot(account).lease_id for account in self.book.accounts()}
        renewed = await asyncio.to_thread(
            self.ledger.renew_leases,
            self.holder,
            [lease_id for lease_id in leases.values() if lease_id is not None],
            self.config.lease_ttl_s,
        )
        self._leases_usable_until = started + self.config.lease_ttl_s * LEASE_USE_FRACTION
        for account, lease_id in leases.items():
            # Unless a grant replaced the lease meanwhile: the new one is live.
            current = self.book.snapshot(account).lease_id
            if lease_id is not None and lease_id not in renewed and current == lease_id:
                self.book.lapsed(account)
            spent = self.book.spending(account)
            # A slice lasts about two renewals at the account's recent pace.
            self._slice[account] = Credit(2 * spent)
            if spent == 0:
                await self._give_back(account)

    async def _give_back(self, account: str) -> None:
        """Return the account's unspent lease to the ledger, and forget it once idle."""
        lease = self.book.snapshot(account)
        if lease.lease_id is not None and lease.free > 0:
            self.book.returned(account, lease.free)
            # Free in the ledger again, for `remaining`.
            self._free_in_ledger[account] = Credit(self._free_in_ledger.get(account, 0) + lease.free)
            try:
                await asyncio.to_thread(self.ledger.return_lease, lease.lease_id, lease.free)
            except Exception:
                # It lapses in its time to live instead.
                log.warning("cannot give back a credit lease", exc_info=True)
        if lease.reserved == 0:
            self.book.lapsed(account)
            self.book.forget(account)
            for figures in (self._slice, self._exhausted_at):
                figures.pop(account, None)

    async def _every(self, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(self.config.refresh_s)
            try:
                await step()
            except Exception:
                log.warning("paid path: %s failed; retrying", getattr(step, "__name__", step), exc_info=True)


async def open_paid_path(
    config: FleetConfig, stack: AsyncExitStack, latest_version: LatestVersion = lambda _model: None
) -> PaidPath:
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
    paid = PaidPath(config.payments, ledger_url, ledger, chain, hint + ".", latest_version)
    await paid.start()
    close_on_exit(stack, "paid path", paid.aclose)
    return paid
