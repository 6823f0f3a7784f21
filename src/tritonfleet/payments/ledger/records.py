"""Values the ledger takes and gives: charges, batches, totals and API keys."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from tritonfleet.payments.ledger.states import BatchState, ChargeKind, ChargeState
from tritonfleet.payments.money import Credit

# A charge row holds one inference's price in a BIGINT (see schema.py).
MAX_CHARGE = 2**63 - 1

# (created_at_s, request_id) of the last charge of a page: the next page starts after it.
UsageCursor = tuple[float, str]

ZERO = Credit(0)

# A charge's key: request ids are the client's, unique per account only.
ChargeKey = tuple[str, str]

# One account's share of a batch, as the vault's settle call takes it.
AccountAmount = tuple[str, Credit]


@dataclass(frozen=True)
class NewCharge:
    """A successful inference's charge, as the gateway commits it."""

    request_id: str
    account: str
    model: str
    version: str
    amount: Credit
    # The API key that made the request (`key_id_of` its hash), for usage per key.
    key_id: str = ""
    # The credit lease the gateway served it from: recording the charge spends that much of it.
    lease_id: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.amount <= MAX_CHARGE:
            raise ValueError(f"charge amount {self.amount} outside 0..{MAX_CHARGE}")

    @property
    def key(self) -> ChargeKey:
        return (self.account, self.request_id)


@dataclass(frozen=True)
class Charge:
    request_id: str
    account: str
    model: str
    version: str
    amount: Credit
    state: ChargeState
    batch_id: str | None
    created_at_s: float
    updated_at_s: float
    key_id: str = ""
    lease_id: str | None = None
    kind: ChargeKind = ChargeKind.INFERENCE

    @property
    def cursor(self) -> UsageCursor:
        return (self.created_at_s, self.request_id)


@dataclass(frozen=True)
class Batch:
    """A settlement batch; `totals` are per account, sorted by account.

    A failed batch whose transaction reverted has no charges left: they went back to committed,
    for a later batch. One failed for good (`max_attempts` refusals) keeps them, set aside.
    """

    batch_id: str
    state: BatchState
    tx_hash: str | None
    nonce: int | None
    created_at_s: float
    updated_at_s: float
    totals: tuple[AccountAmount, ...]
    charge_count: int
    # The block of the settlement that confirmed it.
    confirmed_block: int | None = None
    # Sends the chain refused or reverted, and the last one's error.
    attempts: int = 0
    last_error: str | None = None
    # What its settlement could not take from short deposits, per account: each is a debt
    # charge of that account now (`debt_request_id`), which a later batch settles.
    debts: tuple[AccountAmount, ...] = ()

    @property
    def amount(self) -> Credit:
        return Credit(sum(amount for _, amount in self.totals))

    @property
    def set_aside(self) -> bool:
        """Failed for good with its charges: they stay unsettled until an operator acts."""
        return self.state is BatchState.FAILED and self.charge_count > 0


@dataclass(frozen=True)
class SettlementFigures:
    """The settler's gauges, read from the ledger in one go."""

    batches: dict[BatchState, int]
    # Created time of the oldest charge still to settle: committed, or in a batch being sent.
    oldest_waiting_at_s: float | None
    # Charges of batches failed for good.
    set_aside_charges: int


@dataclass(frozen=True)
class AccountTotals:
    committed: Credit = ZERO
    batched: Credit = ZERO
    settled: Credit = ZERO
    # Of the unsettled, what settlements could not take from short deposits: the account owes it.
    debt: Credit = ZERO

    @property
    def unsettled(self) -> Credit:
        return Credit(self.committed + self.batched)


@dataclass(frozen=True)
class LeaseGrant:
    """What `Ledger.take_lease` gave: `granted` more on the lease `lease_id` (0 when the
    account has nothing free), and what the account still had free beyond it."""

    lease_id: str
    granted: Credit
    free: Credit
    expires_at_s: float
    # The account's oldest charge not yet settled, if any: a settler far behind shows here.
    oldest_unsettled_at_s: float | None


@dataclass(frozen=True)
class ApiKey:
    key_hash: str
    account: str
    label: str
    created_at_s: float
    revoked_at_s: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at_s is None


def batch_id_for(charges: Iterable[ChargeKey]) -> str:
    """bytes32 hex id of the batch holding exactly these charges, whatever their order.

    Each account and request id is length-prefixed, so no two different sets of charges hash
    the same input.
    """
    digest = hashlib.sha256()
    for account, request_id in sorted(charges):
        for part in (account, request_id):
            raw = part.encode()
            digest.update(len(raw).to_bytes(4, "big"))
            digest.update(raw)
    return "0x" + digest.hexdigest()


def debt_request_id(batch_id: str, part: int = 0) -> str:
    """The request id of the debt a short settlement of `batch_id` left an account; a debt over
    one charge's bound (`MAX_CHARGE`) is recorded in parts."""
    return f"debt:{batch_id}" + (f":{part}" if part else "")
