"""Charge and batch states, and the one function that moves each.

A charge:
    reserved → committed        the inference succeeded and the charge is durable
    reserved → released         the inference failed: it costs nothing
    committed → batched         taken into a settlement batch
    batched → settled           its batch confirmed on chain
    batched → committed         its batch failed: a later batch takes it

A batch:
    building → sent             settle transaction signed; its hash and nonce recorded first
    sent → sent                 resent (the chain said "not settled"): new hash and nonce
    building, sent → confirmed  the chain says this batch id is settled (after a crash, the
                                chain is the authority whatever the row says)
    building, sent → failed     it can never settle; its charges go back to committed
    failed → building           the same charges batched again: the batch id is a hash of its
                                request ids, so they get the same id, which the chain never settled

`reserved` and `released` live in the gateway's memory only (`CreditBook`): the ledger's first
row for a charge is `committed`, so the hot path never writes a row that may be thrown away.
"""

from __future__ import annotations

from enum import StrEnum

from tritonfleet.payments.errors import IllegalTransition


class ChargeState(StrEnum):
    RESERVED = "reserved"
    COMMITTED = "committed"
    RELEASED = "released"
    BATCHED = "batched"
    SETTLED = "settled"


class ChargeKind(StrEnum):
    # An inference served.
    INFERENCE = "inference"
    # What a settlement could not take from a short deposit: the account owes it, and the
    # next settlement takes it from the next deposit first.
    DEBT = "debt"


class BatchState(StrEnum):
    BUILDING = "building"
    SENT = "sent"
    CONFIRMED = "confirmed"
    FAILED = "failed"


_CHARGE_MOVES: dict[ChargeState, frozenset[ChargeState]] = {
    ChargeState.RESERVED: frozenset({ChargeState.COMMITTED, ChargeState.RELEASED}),
    ChargeState.COMMITTED: frozenset({ChargeState.BATCHED}),
    ChargeState.BATCHED: frozenset({ChargeState.SETTLED, ChargeState.COMMITTED}),
    ChargeState.RELEASED: frozenset(),
    ChargeState.SETTLED: frozenset(),
}

_BATCH_MOVES: dict[BatchState, frozenset[BatchState]] = {
    BatchState.BUILDING: frozenset({BatchState.SENT, BatchState.CONFIRMED, BatchState.FAILED}),
    BatchState.SENT: frozenset({BatchState.SENT, BatchState.CONFIRMED, BatchState.FAILED}),
    BatchState.FAILED: frozenset({BatchState.BUILDING}),
    BatchState.CONFIRMED: frozenset(),
}


def move_charge(current: ChargeState, target: ChargeState) -> ChargeState:
    """The only place a charge changes state; raises `IllegalTransition` on a forbidden move."""
    if target not in _CHARGE_MOVES[current]:
        raise IllegalTransition("charge", current, target)
    return target


def move_batch(current: BatchState, target: BatchState) -> BatchState:
    """The only place a batch changes state; raises `IllegalTransition` on a forbidden move."""
    if target not in _BATCH_MOVES[current]:
        raise IllegalTransition("batch", current, target)
    return target
