"""reconcile: the ledger against the vault's events; short deposits are no mismatch once recorded
as debts, and batches failed for good are listed."""

from dataclasses import replace

from tritonfleet.payments.chain.records import ChargedEvent, SettledEvent, ShortfallEvent
from tritonfleet.payments.ledger.records import AccountTotals, Batch
from tritonfleet.payments.ledger.states import BatchState
from tritonfleet.payments.money import Credit
from tritonfleet.settler.reconcile import compare, open_debts

ALICE, BOB = "0x" + "a" * 40, "0x" + "b" * 40


def batch(batch_id: str, state: BatchState, *totals: tuple[str, int]) -> Batch:
    return Batch(batch_id, state, "0xtx", 1, 0.0, 0.0, tuple((a, Credit(n)) for a, n in totals), len(totals))


def settled(batch_id: str) -> SettledEvent:
    return SettledEvent(batch_id, Credit(0), 0, 1, "0xtx")


def charged(batch_id: str, account: str, amount: int) -> ChargedEvent:
    return ChargedEvent(batch_id, account, Credit(amount), 1, "0xtx")


def test_ledger_and_chain_that_agree_give_no_problem() -> None:
    batches = [
        batch("0x1", BatchState.CONFIRMED, (ALICE, 3), (BOB, 2)),
        batch("0x2", BatchState.SENT, (ALICE, 1)),
    ]
    events = [charged("0x1", ALICE.upper().replace("0X", "0x"), 3), charged("0x1", BOB, 2)]
    assert compare(batches, [settled("0x1")], events, []) == []


def test_every_kind_of_disagreement_is_reported() -> None:
    batches = [
        batch("0x1", BatchState.CONFIRMED, (ALICE, 3)),  # chain took 4
        batch("0x2", BatchState.CONFIRMED, (ALICE, 1)),  # never settled on chain
        batch("0x3", BatchState.SENT, (BOB, 1)),  # settled on chain, ledger behind
    ]
    settled_events = [settled("0x1"), settled("0x3"), settled("0x4")]
    problems = compare(
        batches,
        settled_events,
        [charged("0x1", ALICE, 4)],
        [ShortfallEvent("0x1", ALICE, Credit(4), Credit(3), 1, "0xtx")],
    )
    assert len(problems) == 5
    joined = "\n".join(problems)
    for expected in (
        "charged 3 in the ledger, 4 on chain",
        "0x2: the chain has no settlement",
        "0x3: the chain settled it, the ledger says sent",
        "0x4: settled on chain, unknown to the ledger",
        "shortfall 1",
    ):
        assert expected in joined


def short(batch_id: str, account: str, wanted: int, taken: int) -> ShortfallEvent:
    return ShortfallEvent(batch_id, account, Credit(wanted), Credit(taken), 1, "0xtx")


def test_a_shortfall_recorded_as_debt_is_no_mismatch() -> None:
    confirmed = replace(batch("0x1", BatchState.CONFIRMED, (ALICE, 5), (BOB, 2)), debts=((ALICE, Credit(3)),))
    events = [charged("0x1", ALICE, 2), charged("0x1", BOB, 2)]
    assert compare([confirmed], [settled("0x1")], events, [short("0x1", ALICE, 5, 2)]) == []


def test_a_shortfall_not_recorded_as_debt_is_a_problem() -> None:
    unrecorded = batch("0x1", BatchState.CONFIRMED, (ALICE, 5))
    wrong = replace(batch("0x2", BatchState.CONFIRMED, (ALICE, 5)), debts=((ALICE, Credit(1)),))
    problems = compare(
        [unrecorded, wrong],
        [settled("0x1"), settled("0x2")],
        [charged("0x1", ALICE, 2), charged("0x2", ALICE, 2)],
        [short("0x1", ALICE, 5, 2), short("0x2", ALICE, 5, 2)],
    )
    joined = "\n".join(problems)
    assert "0x1: account" in joined and "0 of it recorded as debt" in joined
    assert "charged 5 in the ledger (1 of it left as debt), 2 on chain" in joined
    assert "1 of it recorded as debt" in joined


def test_a_batch_failed_for_good_with_its_charges_is_listed() -> None:
    stuck = replace(
        batch("0x1", BatchState.FAILED, (ALICE, 5)), attempts=5, last_error="the contract reverts: owner"
    )
    returned = batch("0x2", BatchState.FAILED)  # its charges went back to committed
    (line,) = compare([stuck, returned], [], [], [])
    assert "0x1: failed for good after 5 attempts" in line and "owner" in line


def test_open_debts_are_listed_largest_first() -> None:
    totals = {
        ALICE: AccountTotals(committed=Credit(3), debt=Credit(3)),
        BOB: AccountTotals(committed=Credit(9), debt=Credit(7)),
        "0x" + "c" * 40: AccountTotals(settled=Credit(4)),
    }
    assert open_debts(totals) == [
        f"account {BOB} owes 7: a debt, taken from its next deposit",
        f"account {ALICE} owes 3: a debt, taken from its next deposit",
    ]
