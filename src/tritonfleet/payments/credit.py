"""Per-account credit leases held in memory: the gateway's check before every paid request."""

from __future__ import annotations

from dataclasses import dataclass

from tritonfleet.payments.errors import DuplicateReservation, InsufficientCredit, UnknownReservation
from tritonfleet.payments.money import Credit


@dataclass(frozen=True)
class Reservation:
    account: str
    request_id: str
    amount: Credit
    # The lease it was held from; its charge spends that lease in the ledger.
    lease_id: str | None


@dataclass(frozen=True)
class CreditSnapshot:
    """An account's credit as the token manager shows it: `reserved` is what gateways' leases
    hold, for requests in flight or soon to come."""

    account: str
    deposit: Credit
    pending_withdrawal: Credit
    unsettled: Credit
    reserved: Credit

    @property
    def available(self) -> Credit:
        return Credit(self.deposit - self.pending_withdrawal - self.unsettled - self.reserved)


@dataclass(frozen=True)
class LeaseSnapshot:
    """One account's lease on this gateway: granted by the ledger, charged, held in flight."""

    account: str
    lease_id: str | None
    granted: Credit
    charged: Credit
    reserved: Credit

    @property
    def free(self) -> Credit:
        return Credit(self.granted - self.charged - self.reserved)


@dataclass(slots=True)
class _Lease:
    lease_id: str | None = None
    granted: int = 0
    charged: int = 0
    reserved: int = 0
    # Charged since the last `spending` call: the next slice is sized on it.
    charged_lately: int = 0

    def free(self) -> int:
        return self.granted - self.charged - self.reserved


class CreditBook:
    """Each account's lease on this gateway, and the reservations in flight against it; pure.

        free = granted - charged - reserved

    The ledger grants a lease's credit atomically (`Ledger.take_lease`), counting every
    gateway's live leases, so the gateways together never hold more than an account has; each
    serves from its own lease with no database round trip per request. A reservation moves to
    charged only once its charge is durable (`commit`), which in the same transaction spends
    that much of the lease in the ledger, so no credit counts twice, nor not at all.

    Concurrency: for use from one asyncio loop. No method awaits, so each runs whole and no
    check can interleave with another's update: racing requests never see the same credit
    as free.
    """

    def __init__(self) -> None:
        self._leases: dict[str, _Lease] = {}
        self._held: dict[tuple[str, str], Reservation] = {}

    def reserve(self, account: str, request_id: str, amount: Credit) -> Reservation:
        """Hold `amount` from the account's lease; `InsufficientCredit` when it is not there."""
        if amount < 0:
            raise ValueError(f"negative price {amount}")
        key = (account, request_id)
        if key in self._held:
            raise DuplicateReservation(f"request {request_id} already holds a reservation")
        lease = self._lease(account)
        free = lease.free()
        if amount > 0 and amount > free:
            raise InsufficientCredit(account, amount, Credit(free))
        lease.reserved += amount
        reservation = Reservation(account, request_id, amount, lease.lease_id)
        self._held[key] = reservation
        return reservation

    def commit(self, reservation: Reservation) -> None:
        """The charge is durably recorded: its amount moves from reserved to charged."""
        lease = self._take(reservation)
        if lease is not None:
            lease.charged += reservation.amount
            lease.charged_lately += reservation.amount

    def release(self, reservation: Reservation) -> None:
        """The request failed (or was already charged): its amount is free again."""
        self._take(reservation)

    def granted(self, account: str, lease_id: str, amount: Credit) -> None:
        """The ledger added `amount` to the account's lease `lease_id` (a new one if the old lapsed)."""
        lease = self._lease(account)
        if lease.lease_id != lease_id:
            self._start_over(lease, lease_id)
        lease.granted += amount

    def returned(self, account: str, amount: Credit) -> None:
        """`amount` of the account's free credit went back to the ledger."""
        lease = self._lease(account)
        if amount > lease.free():
            raise ValueError(f"returning {amount} of a lease with {lease.free()} free")
        lease.granted -= amount

    def lapsed(self, account: str) -> None:
        """The lease was not renewed in time: other gateways may take its credit now."""
        lease = self._leases.get(account)
        if lease is not None:
            self._start_over(lease, None)

    def spending(self, account: str) -> Credit:
        """What the account was charged here since the previous call."""
        lease = self._lease(account)
        spent, lease.charged_lately = lease.charged_lately, 0
        return Credit(spent)

    def free(self, account: str) -> Credit:
        lease = self._leases.get(account)
        return Credit(lease.free() if lease is not None else 0)

    def accounts(self) -> list[str]:
        return list(self._leases)

    def forget(self, account: str) -> None:
        """Drop an account whose lease is closed and that holds nothing in flight."""
        lease = self._leases.get(account)
        if lease is not None and lease.lease_id is None and lease.reserved == 0:
            del self._leases[account]

    def snapshot(self, account: str) -> LeaseSnapshot:
        lease = self._leases.get(account, _Lease())
        return LeaseSnapshot(
            account=account,
            lease_id=lease.lease_id,
            granted=Credit(lease.granted),
            charged=Credit(lease.charged),
            reserved=Credit(lease.reserved),
        )

    def _start_over(self, lease: _Lease, lease_id: str | None) -> None:
        # What is in flight was held from the old lease: it stays reserved, covered by as much
        # granted, so the new lease has nothing free until the ledger grants it more.
        lease.lease_id = lease_id
        lease.granted = lease.reserved
        lease.charged = 0

    def _lease(self, account: str) -> _Lease:
        return self._leases.setdefault(account, _Lease())

    def _take(self, reservation: Reservation) -> _Lease | None:
        """Remove a reservation from its account's lease; that lease, or None when it was held
        from a lease since replaced (its charge spends the old lease in the ledger)."""
        key = (reservation.account, reservation.request_id)
        if self._held.get(key) != reservation:
            raise UnknownReservation(f"request {reservation.request_id} holds no such reservation")
        del self._held[key]
        lease = self._lease(reservation.account)
        lease.reserved -= reservation.amount
        if reservation.lease_id != lease.lease_id:
            lease.granted -= reservation.amount  # the cover `_start_over` gave it
            return None
        return lease
