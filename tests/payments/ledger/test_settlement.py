"""The ledger's settlement side on SQLite and PostgreSQL: debts a short settlement leaves, the
block that confirmed a batch, refusals counted, batches failed for good, the settler's figures."""

from __future__ import annotations

from tests.fakes import FakeClock
from tritonfleet.payments.ledger.records import MAX_CHARGE, AccountTotals, NewCharge, debt_request_id
from tritonfleet.payments.ledger.states import BatchState
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.money import Credit

TX = "0x" + "ab" * 32


def commit(ledger: Ledger, account: str, *amounts: int, prefix: str = "r") -> None:
    ledger.record_committed(
        [
            NewCharge(f"{prefix}{i}", account, "simple", "1", Credit(amount))
            for i, amount in enumerate(amounts)
        ]
    )


def test_a_short_settlement_leaves_a_debt_that_counts_as_unsettled(ledger: Ledger, clock: FakeClock) -> None:
    commit(ledger, "alice", 5, 3)
    commit(ledger, "bob", 4)
    batch = ledger.build_batch(100)
    assert batch is not None
    clock.advance(10)
    totals = ledger.mark_confirmed(batch.batch_id, block=42, debts=[("alice", Credit(6))])
    assert totals == [("alice", 8), ("bob", 4)], "what the batch asked, debts aside"
    assert ledger.unsettled_by_account() == {"alice": 6}
    assert ledger.totals("alice") == AccountTotals(committed=Credit(6), settled=Credit(8), debt=Credit(6))
    assert ledger.totals("bob") == AccountTotals(settled=Credit(4))
    confirmed = ledger.batch(batch.batch_id)
    assert (confirmed.state, confirmed.confirmed_block, confirmed.debts) == (
        BatchState.CONFIRMED,
        42,
        (("alice", 6),),
    )


def test_the_next_batch_takes_the_debt_first_and_settling_it_clears_it(
    ledger: Ledger, clock: FakeClock
) -> None:
    commit(ledger, "alice", 5)
    first = ledger.build_batch(100)
    assert first is not None
    clock.advance(10)
    commit(ledger, "alice", 1, prefix="later")  # committed while the first batch settled
    clock.advance(10)
    ledger.mark_confirmed(first.batch_id, block=7, debts=[("alice", Credit(2))])
    second = ledger.build_batch(1)
    assert second is not None and second.totals == (("alice", 2),), "the debt is the oldest charge"
    ledger.mark_confirmed(second.batch_id, block=8)
    assert ledger.totals("alice") == AccountTotals(committed=Credit(1), settled=Credit(7))
    assert ledger.batch(first.batch_id).debts == (("alice", 2),), "the batch still shows what it left"


def test_a_debt_over_one_charge_bound_is_recorded_in_parts(ledger: Ledger) -> None:
    commit(ledger, "alice", *[MAX_CHARGE] * 3)
    batch = ledger.build_batch(100)
    assert batch is not None
    owed = Credit(2 * MAX_CHARGE + 5)
    ledger.mark_confirmed(batch.batch_id, block=1, debts=[("alice", owed)])
    # Summed in Python, exact: SQLite's SUM stops at int64 (schema.py).
    assert ledger.batch(batch.batch_id).debts == (("alice", owed),)
    again = ledger.build_batch(100)
    assert again is not None and again.charge_count == 3 and again.amount == owed


def test_a_debt_is_recorded_once_per_batch_and_account(ledger: Ledger) -> None:
    commit(ledger, "alice", 5)
    batch = ledger.build_batch(100)
    assert batch is not None
    ledger.mark_confirmed(batch.batch_id, block=1, debts=[("alice", Credit(2)), ("alice", Credit(2))])
    assert ledger.unsettled_by_account() == {"alice": 2}
    assert debt_request_id(batch.batch_id) == f"debt:{batch.batch_id}"


def test_refusals_are_counted_with_the_last_error(ledger: Ledger) -> None:
    commit(ledger, "alice", 5)
    batch = ledger.build_batch(100)
    assert batch is not None
    assert ledger.record_refusal(batch.batch_id, "the contract reverts: first") == 1
    assert ledger.record_refusal(batch.batch_id, "the contract reverts: second") == 2
    counted = ledger.batch(batch.batch_id)
    assert (counted.attempts, counted.last_error, counted.state) == (
        2,
        "the contract reverts: second",
        BatchState.BUILDING,
    )


def test_a_batch_failed_for_good_keeps_its_charges_out_of_later_batches(
    ledger: Ledger, clock: FakeClock
) -> None:
    commit(ledger, "alice", 5)
    stuck = ledger.build_batch(100)
    assert stuck is not None
    ledger.mark_sent(stuck.batch_id, TX, 3)
    ledger.record_refusal(stuck.batch_id, "refused")
    ledger.mark_failed_for_good(stuck.batch_id)
    commit(ledger, "bob", 4)
    later = ledger.build_batch(100)
    assert later is not None and later.totals == (("bob", 4),)
    failed = ledger.batch(stuck.batch_id)
    assert failed.state is BatchState.FAILED and failed.set_aside and failed.charge_count == 1
    assert ledger.unfinished_batches() == [later]
    assert ledger.unsettled_by_account() == {"alice": 5, "bob": 4}, "set aside, not forgiven"


def test_a_reverted_batch_reopens_with_its_refusals_counted(ledger: Ledger) -> None:
    commit(ledger, "alice", 5)
    batch = ledger.build_batch(100)
    assert batch is not None
    ledger.mark_sent(batch.batch_id, TX, 3)
    ledger.record_refusal(batch.batch_id, "reverted")
    ledger.mark_failed(batch.batch_id)
    assert not ledger.batch(batch.batch_id).set_aside
    reopened = ledger.build_batch(100)
    assert reopened is not None and reopened.batch_id == batch.batch_id
    assert (reopened.state, reopened.attempts, reopened.tx_hash) == (BatchState.BUILDING, 1, None)


def test_the_figures_show_batches_by_state_the_oldest_waiting_charge_and_the_set_aside(
    ledger: Ledger, clock: FakeClock
) -> None:
    assert ledger.settlement_figures().oldest_waiting_at_s is None
    commit(ledger, "alice", 1)
    set_aside = ledger.build_batch(100)
    assert set_aside is not None
    ledger.mark_failed_for_good(set_aside.batch_id)
    clock.advance(5)
    commit(ledger, "bob", 1)
    in_flight = ledger.build_batch(100)
    assert in_flight is not None
    ledger.mark_sent(in_flight.batch_id, TX, 1)
    clock.advance(5)
    commit(ledger, "carol", 1)
    figures = ledger.settlement_figures()
    assert figures.batches == {BatchState.FAILED: 1, BatchState.SENT: 1}
    assert figures.oldest_waiting_at_s == 1_700_000_005.0, "bob's: alice's is set aside"
    assert figures.set_aside_charges == 1
    ledger.mark_confirmed(in_flight.batch_id, block=3)
    assert ledger.settlement_figures().oldest_waiting_at_s == 1_700_000_010.0
