"""Per-account credit held in memory: the gateway's check before every paid request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tritonfleet.payments.errors import DuplicateReservation, InsufficientCredit, UnknownReservation
from tritonfleet.payments.money import Credit


@dataclass(frozen=True)
class Reservation:
    account: str
    request_id: str
    amount: Credit


@dataclass(frozen=True)
class CreditSnapshot:
    account: str
    deposit: Credit
    pending_withdrawal: Credit
    unsettled: Credit
    reserved: Credit

    @property
    def available(self) -> Credit:
        return Credit(self.deposit - self.pending_withdrawal - self.unsettled - self.reserved)


@dataclass(slots=True)
class _Balance:
    deposit: int = 0
    pending_withdrawal: int = 0
    unsettled: int = 0
    reserved: int = 0

    def available(self) -> int:
        return self.deposit - self.pending_withdrawal - self.unsettled - self.reserved


class CreditBook:
    """Deposits, unsettled charges and in-flight reservations per account; pure, no I/O.

        available = deposit - pending_withdrawal - unsettled - reserved

    Why no database round trip per request: the check needs only these four sums, and each
    is a copy, kept in step by this process, of a durable record that changes only through
    it or through events it is told of. The durable record of deposits and withdrawals is the
    chain (fed in by `set_deposit` and `set_pending_withdrawal`); that of charges is the
    ledger. A charge reaches the ledger before `commit` moves it here from reserved to
    unsettled: the gateway awaits `ChargeWriter.commit` first, and meanwhile the amount stays
    reserved, so memory never runs ahead of the ledger and no credit is free twice.
    Reservations are not durable and need not be: a request in flight when the process dies
    was never charged. At start-up `load_unsettled(ledger.unsettled_by_account())` and the
    chain's deposits rebuild the book exactly; `settled` mirrors a confirmed batch, after
    which the vault's deposit and the unsettled sum have both dropped by its amount.

    Several gateways sharing one PostgreSQL ledger each see only their own new charges
    between two `load_unsettled` calls, so together they can overspend by what the others
    charge in one refresh period; the gateway calls it periodically (one query per period).

    Concurrency: for use from one asyncio loop. No method awaits, so each runs whole and no
    check can interleave with another's update: racing requests never see the same credit
    as free.
    """

    def __init__(self) -> None:
        self._balances: dict[str, _Balance] = {}
        self._held: dict[str, Reservation] = {}

    def reserve(self, account: str, request_id: str, amount: Credit) -> Reservation:
        """Hold `amount` for a request; raises `InsufficientCredit` (402) when it is not there."""
        if amount < 0:
            raise ValueError(f"negative price {amount}")
        if request_id in self._held:
            raise DuplicateReservation(f"request {request_id} already holds a reservation")
        balance = self._balance(account)
        available = balance.available()
        if amount > 0 and amount > available:
            raise InsufficientCredit(account, amount, Credit(available))
        balance.reserved += amount
        reservation = Reservation(account, request_id, amount)
        self._held[request_id] = reservation
        return reservation

    def commit(self, reservation: Reservation) -> None:
        """The charge is durably recorded: its amount moves from reserved to unsettled."""
        balance = self._take(reservation)
        balance.unsettled += reservation.amount

    def release(self, reservation: Reservation) -> None:
        """The request failed (or was already charged): its amount is free again."""
        self._take(reservation)

    def settled(self, account: str, amount: Credit) -> None:
        """A batch confirmed: the vault took `amount` from the deposit, settling that much."""
        balance = self._balance(account)
        # Floors at zero: a chain refresh may have lowered the deposit already, and another
        # gateway's charges are in the unsettled sum only from its last load.
        balance.unsettled = max(0, balance.unsettled - amount)
        balance.deposit = max(0, balance.deposit - amount)

    def set_deposit(self, account: str, amount: Credit) -> None:
        self._balance(account).deposit = amount

    def set_pending_withdrawal(self, account: str, amount: Credit) -> None:
        self._balance(account).pending_withdrawal = amount

    def load_unsettled(self, unsettled: Mapping[str, Credit]) -> None:
        """Replace every account's unsettled sum with the ledger's (accounts absent: zero)."""
        for account, balance in self._balances.items():
            balance.unsettled = unsettled.get(account, 0)
        for account, amount in unsettled.items():
            self._balance(account).unsettled = amount

    def available(self, account: str) -> Credit:
        return self.snapshot(account).available

    def snapshot(self, account: str) -> CreditSnapshot:
        balance = self._balances.get(account, _Balance())
        return CreditSnapshot(
            account=account,
            deposit=Credit(balance.deposit),
            pending_withdrawal=Credit(balance.pending_withdrawal),
            unsettled=Credit(balance.unsettled),
            reserved=Credit(balance.reserved),
        )

    def _balance(self, account: str) -> _Balance:
        return self._balances.setdefault(account, _Balance())

    def _take(self, reservation: Reservation) -> _Balance:
        if self._held.get(reservation.request_id) != reservation:
            raise UnknownReservation(f"request {reservation.request_id} holds no such reservation")
        del self._held[reservation.request_id]
        balance = self._balance(reservation.account)
        balance.reserved -= reservation.amount
        return balance
