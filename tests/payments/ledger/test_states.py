from itertools import product

import pytest

from tritonfleet.payments.errors import IllegalTransition
from tritonfleet.payments.ledger.states import BatchState, ChargeState, move_batch, move_charge

C, B = ChargeState, BatchState

CHARGE_MOVES = {
    (C.RESERVED, C.COMMITTED),
    (C.RESERVED, C.RELEASED),
    (C.COMMITTED, C.BATCHED),
    (C.BATCHED, C.SETTLED),
    (C.BATCHED, C.COMMITTED),
}
BATCH_MOVES = {
    (B.BUILDING, B.SENT),
    (B.BUILDING, B.CONFIRMED),
    (B.BUILDING, B.FAILED),
    (B.SENT, B.SENT),
    (B.SENT, B.CONFIRMED),
    (B.SENT, B.FAILED),
    (B.FAILED, B.BUILDING),
}


@pytest.mark.parametrize(("current", "target"), sorted(CHARGE_MOVES))
def test_a_legal_charge_move_returns_its_target(current: ChargeState, target: ChargeState) -> None:
    assert move_charge(current, target) is target


@pytest.mark.parametrize(("current", "target"), sorted(set(product(C, C)) - CHARGE_MOVES))
def test_every_other_charge_move_raises(current: ChargeState, target: ChargeState) -> None:
    with pytest.raises(IllegalTransition, match=f"{current} → {target}"):
        move_charge(current, target)


@pytest.mark.parametrize(("current", "target"), sorted(BATCH_MOVES))
def test_a_legal_batch_move_returns_its_target(current: BatchState, target: BatchState) -> None:
    assert move_batch(current, target) is target


@pytest.mark.parametrize(("current", "target"), sorted(set(product(B, B)) - BATCH_MOVES))
def test_every_other_batch_move_raises(current: BatchState, target: BatchState) -> None:
    with pytest.raises(IllegalTransition, match=f"{current} → {target}"):
        move_batch(current, target)


def test_states_are_stored_as_the_design_names_them() -> None:
    assert list(C) == ["reserved", "committed", "released", "batched", "settled"]
    assert list(B) == ["building", "sent", "confirmed", "failed"]
