"""Values the ledger takes and gives: charges, batches, totals and API keys."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from tritonfleet.payments.ledger.states import BatchState, ChargeState
from tritonfleet.payments.money import Credit

# A charge row holds one inference's price in a BIGINT (see schema.py).
MAX_CHARGE = 2**63 - 1

# (created_at_s, request_id) of the last charge of a page: the next page starts after it.
UsageCursor = tuple[float, str]

ZERO = Credit(0)

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

    def __post_init__(self) -> None:
        if not 0 <= self.amount <= MAX_CHARGE:
            raise ValueError(f"charge amount {self.amount} outside 0..{MAX_CHARGE}")


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

    @property
    def cursor(self) -> UsageCursor:
        return (self.created_at_s, self.request_id)


@dataclass(frozen=True)
class Batch:
    """A settlement batch; `totals` are per account, sorted by account.

    A failed batch has no charges left: they went back to committed, for a later batch.
    """

    batch_id: str
    state: BatchState
    tx_hash: str | None
    nonce: int | None
    created_at_s: float
    updated_at_s: float
    totals: tuple[AccountAmount, ...]
    charge_count: int

    @property
    def amount(self) -> Credit:
        return Credit(sum(amount for _, amount in self.totals))


@dataclass(frozen=True)
class AccountTotals:
    committed: Credit = ZERO
    batched: Credit = ZERO
    settled: Credit = ZERO

    @property
    def unsettled(self) -> Credit:
        return Credit(self.committed + self.batched)


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


def batch_id_for(request_ids: Iterable[str]) -> str:
    """bytes32 hex id of the batch holding exactly these charges, whatever their order.

    Each id is length-prefixed, so no two different sets of ids hash the same input.
    """
    digest = hashlib.sha256()
    for request_id in sorted(request_ids):
        raw = request_id.encode()
        digest.update(len(raw).to_bytes(4, "big"))
        digest.update(raw)
    return "0x" + digest.hexdigest()
