from tritonfleet.payments.chain.records import ChargedEvent, SettledEvent, ShortfallEvent
from tritonfleet.payments.ledger.records import Batch
from tritonfleet.payments.ledger.states import BatchState
from tritonfleet.payments.money import Credit
from tritonfleet.settler.reconcile import compare

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
