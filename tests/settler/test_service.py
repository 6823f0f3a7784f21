"""The settler against a real anvil and a real ledger: exactly once, whatever crashes; short
deposits left as debts; batches the chain refuses, and fees over the ceiling."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.devnet import deployed_chain, depositor, new_anvil
from tests.settler.world import RefusesAccount, RevertsOnChain, charge, like, take_settler_nonce, top_up
from tritonfleet.config import SettlerConfig
from tritonfleet.payments.chain.client import (
    ChainUnavailable,
    FeeAboveCeiling,
    NonceTaken,
    ReceiptTimeout,
    SignedTx,
)
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.ledger.states import BatchState
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.money import Credit
from tritonfleet.settler import service as settler_module
from tritonfleet.settler.metrics import SettlerMetrics
from tritonfleet.settler.reconcile import compare
from tritonfleet.settler.rounds import CHECK_S, Rounds
from tritonfleet.settler.service import BatchRefused, Settler


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as opened:
        yield opened


class Crash(Exception):
    """Stands for the process dying at that point: nothing after it runs."""


class CrashAfterSend(DevChain):
    """The real chain, but the settler 'dies' right after its settle transaction is broadcast."""

    def broadcast(self, signed: SignedTx) -> str:
        super().broadcast(signed)
        raise Crash


class CrashBeforeSend(DevChain):
    """The real chain, but the settler 'dies' after recording the signed transaction, before
    it is broadcast."""

    def broadcast(self, signed: SignedTx) -> str:
        raise Crash


class NonceRace(DevChain):
    """The real chain, but another sender with the settler's key sends a transaction between
    the settler's signing and its broadcast, taking the nonce the settler signed with."""

    def broadcast(self, signed: SignedTx) -> str:
        if not getattr(self, "raced", False):
            self.raced = True
            take_settler_nonce(self)
        return super().broadcast(signed)


def crashing(chain: DevChain, kind: type[DevChain] = CrashAfterSend) -> DevChain:
    return like(chain, kind)


def test_committed_charges_settle_in_one_batch_and_leave_the_deposits(
    chain: DevChain, ledger: Ledger
) -> None:
    alice, bob = depositor(chain, 100), depositor(chain, 100)
    charge(ledger, alice.address, 1, 2, 3)
    charge(ledger, bob.address, 5)
    assert Settler(ledger, chain, max_charges=1000).settle_pending() == 1
    assert chain.deposit_of(alice.address) == 94 and chain.deposit_of(bob.address) == 95
    (batch,) = ledger.settlements()
    assert batch.state is BatchState.CONFIRMED and batch.tx_hash
    assert chain.is_settled(batch.batch_id)
    assert ledger.unsettled_by_account() == {}


def test_a_backlog_of_more_accounts_than_one_settlement_pays_settles_in_one_round(
    chain: DevChain, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settler_module, "MAX_BATCH_ACCOUNTS", 2)
    users = [depositor(chain, 100) for _ in range(5)]
    for user in users:
        charge(ledger, user.address, 3)
    assert Settler(ledger, chain, max_charges=1000).settle_pending() == 3
    assert all(len(batch.totals) <= 2 for batch in ledger.settlements())
    assert [chain.deposit_of(user.address) for user in users] == [97] * 5
    assert ledger.unsettled_by_account() == {}


def test_one_transaction_per_inference_when_batches_hold_one_charge(chain: DevChain, ledger: Ledger) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 1, 1, 1)
    assert Settler(ledger, chain, max_charges=1).settle_pending() == 3
    assert len({batch.tx_hash for batch in ledger.settlements()}) == 3


def test_charges_committed_during_a_round_wait_for_the_next(chain: DevChain, ledger: Ledger) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 1, 2)

    class ChargedMeanwhile(DevChain):
        def broadcast(self, signed: SignedTx) -> str:
            charge(ledger, alice.address, 4)  # the gateway goes on charging
            return super().broadcast(signed)

    settler = Settler(ledger, crashing(chain, ChargedMeanwhile), max_charges=1000)
    assert settler.settle_pending() == 1
    assert ledger.unsettled_by_account() == {alice.address: 4}, "one batch a round, not a chase"
    assert Settler(ledger, chain, max_charges=1000).settle_pending() == 1
    assert chain.deposit_of(alice.address) == 93


def test_a_crash_between_sending_and_marking_settles_exactly_once(chain: DevChain, ledger: Ledger) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 7)
    with pytest.raises(Crash):
        Settler(ledger, crashing(chain), max_charges=1000).settle_pending()
    (unfinished,) = ledger.unfinished_batches()
    assert unfinished.state is BatchState.SENT and unfinished.tx_hash, "the hash was recorded first"
    restarted = Settler(ledger, chain, max_charges=1000)
    assert restarted.settle_pending() == 1
    assert chain.deposit_of(alice.address) == 93, "charged once, not twice"
    settled = [e for e in chain.settled_events() if e.batch_id == unfinished.batch_id]
    assert len(settled) == 1


def test_a_crash_before_broadcasting_resends_the_recorded_transaction(
    chain: DevChain, ledger: Ledger
) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 6)
    with pytest.raises(Crash):
        Settler(ledger, crashing(chain, CrashBeforeSend), max_charges=1000).settle_pending()
    (recorded,) = ledger.unfinished_batches()
    assert recorded.state is BatchState.SENT and chain.receipt_of(recorded.tx_hash or "") is None
    assert Settler(ledger, chain, max_charges=1000).settle_pending() == 1
    assert chain.deposit_of(alice.address) == 94
    assert len([e for e in chain.settled_events() if e.batch_id == recorded.batch_id]) == 1


def test_a_building_batch_the_vault_settled_already_is_confirmed_without_a_second_settlement(
    chain: DevChain, ledger: Ledger
) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 5)
    batch = ledger.build_batch(1000)
    assert batch is not None and batch.state is BatchState.BUILDING
    chain.settle(batch.batch_id, [alice.address], [Credit(5)])  # however it got there
    assert Settler(ledger, chain, max_charges=1000).settle_pending() == 1
    assert chain.deposit_of(alice.address) == 95, "charged once, not twice"
    assert ledger.settlements()[0].state is BatchState.CONFIRMED
    assert ledger.unsettled_by_account() == {}


def test_a_nonce_taken_by_another_sender_is_signed_again_with_a_fresh_one(
    chain: DevChain, ledger: Ledger
) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 7)
    assert Settler(ledger, crashing(chain, NonceRace), max_charges=1000).settle_pending() == 1
    assert chain.deposit_of(alice.address) == 93
    (batch,) = ledger.settlements()
    assert batch.state is BatchState.CONFIRMED and chain.receipt_of(batch.tx_hash or "") is not None


def test_a_recorded_nonce_taken_while_the_settler_was_down_is_replaced(
    chain: DevChain, ledger: Ledger
) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 3)
    with pytest.raises(Crash):
        Settler(ledger, crashing(chain, CrashBeforeSend), max_charges=1000).settle_pending()
    take_settler_nonce(chain)  # another sender with the settler's key takes the recorded nonce
    assert Settler(ledger, chain, max_charges=1000).settle_pending() == 1
    assert chain.deposit_of(alice.address) == 97
    assert ledger.settlements()[0].state is BatchState.CONFIRMED


def test_a_crash_with_the_transaction_still_pending_settles_exactly_once(
    chain: DevChain, ledger: Ledger
) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 4)
    chain.set_automine(False)
    try:
        with pytest.raises(Crash):
            Settler(ledger, crashing(chain), max_charges=1000).settle_pending()
        chain.mine()  # the lost transaction lands while the settler is down
        assert Settler(ledger, chain, max_charges=1000).settle_pending() == 1
    finally:
        chain.set_automine(True)
    assert chain.deposit_of(alice.address) == 96
    assert ledger.settlements()[0].state is BatchState.CONFIRMED


def test_charges_queue_while_the_chain_is_down_and_settle_when_it_is_back(
    tmp_path: Path, ledger: Ledger
) -> None:
    anvil = new_anvil(tmp_path)
    anvil.start()
    try:
        chain = deployed_chain(anvil)
        alice = depositor(chain, 100)
        anvil.stop()
        charge(ledger, alice.address, 2, 3)
        settler = Settler(ledger, chain, max_charges=1000)
        with pytest.raises(ChainUnavailable):
            settler.settle_pending()
        assert ledger.unsettled_by_account() == {alice.address: 5}, "nothing is lost meanwhile"
        anvil.start()
        assert settler.settle_pending() == 1
        assert chain.deposit_of(alice.address) == 95
    finally:
        anvil.stop()


# Short deposits


def test_a_short_deposit_leaves_a_debt_that_the_next_deposit_pays(chain: DevChain, ledger: Ledger) -> None:
    alice, bob = depositor(chain, 5), depositor(chain, 100)
    charge(ledger, alice.address, 4, 4)
    charge(ledger, bob.address, 3)
    settler = Settler(ledger, chain, max_charges=1000)
    assert settler.settle_pending() == 1
    assert chain.deposit_of(alice.address) == 0 and chain.deposit_of(bob.address) == 97
    (short,) = ledger.settlements()
    assert short.debts == ((alice.address, 3),)
    assert ledger.totals(alice.address).debt == 3
    assert ledger.unsettled_by_account() == {alice.address: 3}, "the debt counts against her credit"
    assert (
        compare(
            ledger.settlements(), chain.settled_events(), chain.charged_events(), chain.shortfall_events()
        )
        == []
    ), "a shortfall recorded as debt is no mismatch"

    assert settler.settle_pending() == 0, "an empty deposit: nothing to take the debt from"
    assert len(chain.settled_events()) == 1

    top_up(chain, alice, 10)
    charge(ledger, alice.address, 2)
    assert settler.settle_pending() == 1
    assert chain.deposit_of(alice.address) == 5, "the debt first, then the new charge"
    assert ledger.unsettled_by_account() == {}
    assert ledger.totals(alice.address).debt == 0
    assert (
        compare(
            ledger.settlements(), chain.settled_events(), chain.charged_events(), chain.shortfall_events()
        )
        == []
    )


def test_a_settled_batch_records_the_block_that_confirmed_it(chain: DevChain, ledger: Ledger) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 1)
    Settler(ledger, chain, max_charges=1000).settle_pending()
    (batch,) = ledger.settlements()
    receipt = chain.receipt_of(batch.tx_hash or "")
    assert receipt is not None and batch.confirmed_block == receipt.block_number


def test_a_short_settlement_found_after_a_crash_still_leaves_its_debt(
    chain: DevChain, ledger: Ledger
) -> None:
    alice = depositor(chain, 2)
    charge(ledger, alice.address, 7)
    with pytest.raises(Crash):
        Settler(ledger, crashing(chain), max_charges=1000).settle_pending()
    assert Settler(ledger, chain, max_charges=1000).settle_pending() == 1
    assert ledger.settlements()[0].debts == ((alice.address, 5),)
    assert ledger.unsettled_by_account() == {alice.address: 5}


# Refusals


def test_a_batch_the_chain_refuses_fails_for_good_after_n_tries_and_later_batches_settle(
    chain: DevChain, ledger: Ledger
) -> None:
    alice, bob = depositor(chain, 100), depositor(chain, 100)
    refusing = like(chain, RefusesAccount)
    assert isinstance(refusing, RefusesAccount)
    refusing.refused = alice.address
    settler = Settler(ledger, refusing, max_charges=1000, max_attempts=3)
    charge(ledger, alice.address, 4)
    for attempt in (1, 2):
        with pytest.raises(BatchRefused) as refused:
            settler.settle_pending()
        assert (refused.value.attempts, refused.value.failed_for_good) == (attempt, False)
        charge(ledger, bob.address, 1)  # committed behind the refused batch, which holds it up
    with pytest.raises(BatchRefused) as refused:
        settler.settle_pending()
    assert refused.value.failed_for_good
    assert settler.settle_pending() == 1, "later batches no longer wait behind it"
    assert chain.deposit_of(bob.address) == 98 and chain.deposit_of(alice.address) == 100
    failed = ledger.batch(refused.value.batch_id)
    assert (failed.state, failed.attempts, failed.charge_count) == (BatchState.FAILED, 3, 1)
    assert "empty batch id" in (failed.last_error or "")
    assert ledger.unsettled_by_account() == {alice.address: 4}, "set aside, not lost"
    (line,) = compare(
        ledger.settlements(), chain.settled_events(), chain.charged_events(), chain.shortfall_events()
    )
    assert "failed for good after 3 attempts" in line and refused.value.batch_id in line


def test_a_settlement_that_reverts_on_chain_is_retried_then_failed_for_good(
    chain: DevChain, ledger: Ledger
) -> None:
    alice, bob = depositor(chain, 100), depositor(chain, 100)
    reverting = like(chain, RevertsOnChain)
    assert isinstance(reverting, RevertsOnChain)
    reverting.reverted = alice.address
    settler = Settler(ledger, reverting, max_charges=1000, max_attempts=2)
    charge(ledger, alice.address, 4)
    with pytest.raises(BatchRefused) as first:
        settler.settle_pending()
    assert ledger.batch(first.value.batch_id).state is BatchState.FAILED
    assert ledger.unsettled_by_account() == {alice.address: 4}
    with pytest.raises(BatchRefused) as second:
        settler.settle_pending()
    assert second.value.batch_id == first.value.batch_id, "the same charges reopen the same batch"
    assert second.value.failed_for_good
    charge(ledger, bob.address, 2)
    assert settler.settle_pending() == 1
    assert chain.deposit_of(bob.address) == 98
    failed = ledger.batch(first.value.batch_id)
    assert failed.set_aside and failed.attempts == 2 and "reverted" in (failed.last_error or "")


def test_a_nonce_race_lost_every_time_is_no_refusal(chain: DevChain, ledger: Ledger) -> None:
    alice = depositor(chain, 100)

    class AlwaysRaced(DevChain):
        """Another sender takes the nonce before each of the settler's broadcasts."""

        def broadcast(self, signed: SignedTx) -> str:
            take_settler_nonce(self)
            return super().broadcast(signed)

    charge(ledger, alice.address, 1)
    # The node says "nonce too low", or "replacement transaction underpriced" while the other
    # sender's transaction is still pending: both are a nonce taken (chain/client.py).
    with pytest.raises(NonceTaken) as raced:
        Settler(ledger, like(chain, AlwaysRaced), max_charges=1000, max_attempts=1).settle_pending()
    assert not isinstance(raced.value, BatchRefused)
    (batch,) = ledger.unfinished_batches()
    assert batch.attempts == 0
    assert Settler(ledger, chain, max_charges=1000).settle_pending() == 1


# The vault's cap per batch


def lower_cap(chain: DevChain, cap: int) -> None:
    chain.wait_confirmed(chain.administer("lower_max_batch_total", cap))


def test_a_batch_over_the_cap_is_split_into_batches_that_fit(chain: DevChain, ledger: Ledger) -> None:
    alice, bob = depositor(chain, 100), depositor(chain, 100)
    lower_cap(chain, 10)
    charge(ledger, alice.address, 4, 4, 4)
    charge(ledger, bob.address, 4)
    assert Settler(ledger, chain, max_charges=1000).settle_pending() == 2, "in one round"
    assert [b.state for b in ledger.settlements()] == [BatchState.CONFIRMED] * 2, "no failed batch left"
    assert sorted(b.amount for b in ledger.settlements()) == [8, 8]
    assert chain.deposit_of(alice.address) == 88 and chain.deposit_of(bob.address) == 96
    assert [e.total for e in chain.settled_events()] == [8, 8]
    assert ledger.unsettled_by_account() == {}


def test_a_charge_over_the_cap_is_set_aside_at_once_and_never_retried(
    chain: DevChain, ledger: Ledger
) -> None:
    alice, bob = depositor(chain, 100), depositor(chain, 100)
    lower_cap(chain, 10)
    charge(ledger, alice.address, 3)
    charge(ledger, bob.address, 11)
    charge(ledger, alice.address, 2)
    settler = Settler(ledger, chain, max_charges=1000, max_attempts=5)
    assert settler.settle_pending() == 2
    (aside,) = [b for b in ledger.settlements() if b.set_aside]
    assert aside.totals == ((bob.address, 11),) and aside.attempts == 1
    assert "over the vault's cap of 10" in (aside.last_error or "")
    assert chain.deposit_of(alice.address) == 95 and chain.deposit_of(bob.address) == 100
    assert settler.settle_pending() == 0 and ledger.batch(aside.batch_id).attempts == 1, "not retried"
    problems = compare(ledger.settlements(), chain.settled_events(), chain.charged_events(), [])
    assert any("over the vault's cap" in line for line in problems), "reconcile lists it"


def test_a_batch_built_before_the_cap_was_lowered_is_rebuilt_to_fit(chain: DevChain, ledger: Ledger) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 5, 5, 5)
    built = ledger.build_batch(1000)  # then the settler died, and the owner lowered the cap
    assert built is not None and built.amount == 15
    lower_cap(chain, 10)
    assert Settler(ledger, chain, max_charges=1000).settle_pending() == 2
    assert not chain.is_settled(built.batch_id) and chain.deposit_of(alice.address) == 85
    assert max(e.total for e in chain.settled_events()) <= 10


def test_a_cap_of_zero_pauses_settlement(chain: DevChain, ledger: Ledger) -> None:
    alice = depositor(chain, 100)
    lower_cap(chain, 0)
    charge(ledger, alice.address, 1)
    assert Settler(ledger, chain, max_charges=1000).settle_pending() == 0
    assert ledger.committed_count() == 1 and ledger.settlements() == []


# Fees


def test_a_settle_bids_no_more_than_the_ceiling(chain: DevChain, ledger: Ledger) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 1)
    base_fee = chain.w3.eth.get_block("latest").get("baseFeePerGas", 0)
    tip = chain.w3.eth.max_priority_fee
    ceiling = base_fee + tip + 1  # under the usual bid of twice the base fee
    assert Settler(ledger, chain, max_charges=1000, max_fee_per_gas=ceiling).settle_pending() == 1
    (batch,) = ledger.settlements()
    assert chain.w3.eth.get_transaction(batch.tx_hash or "")["maxFeePerGas"] <= ceiling


def test_under_a_ceiling_below_the_base_fee_the_settler_waits(chain: DevChain, ledger: Ledger) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 1)
    with pytest.raises(FeeAboveCeiling):
        Settler(ledger, chain, max_charges=1000, max_fee_per_gas=1).settle_pending()
    (waiting,) = ledger.unfinished_batches()
    assert (waiting.state, waiting.attempts) == (BatchState.BUILDING, 0), "nothing sent, nothing refused"
    assert Settler(ledger, chain, max_charges=1000).settle_pending() == 1


def test_a_stuck_transaction_is_waited_for_rather_than_outbid_over_the_ceiling(
    chain: DevChain, ledger: Ledger
) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 3)
    chain.set_automine(False)
    try:
        with pytest.raises(Crash):
            Settler(ledger, crashing(chain), max_charges=1000).settle_pending()
        (stuck,) = ledger.unfinished_batches()
        bid = chain.w3.eth.get_transaction(stuck.tx_hash or "")["maxFeePerGas"]
        impatient = Settler(ledger, like(chain, DevChain, receipt_timeout_s=0.2), 1000, max_fee_per_gas=bid)
        with pytest.raises(ReceiptTimeout):
            impatient.settle_pending()
        assert ledger.unfinished_batches()[0].tx_hash == stuck.tx_hash, "not replaced"
        chain.mine()
        assert impatient.settle_pending() == 1
    finally:
        chain.set_automine(True)
    assert chain.deposit_of(alice.address) == 97
    assert ledger.settlements()[0].tx_hash == stuck.tx_hash


def test_rounds_of_a_refused_batch_are_counted_and_backed_off(chain: DevChain, ledger: Ledger) -> None:
    alice = depositor(chain, 100)
    refusing = like(chain, RefusesAccount)
    assert isinstance(refusing, RefusesAccount)
    refusing.refused = alice.address
    charge(ledger, alice.address, 1)
    metrics = SettlerMetrics()
    settings = SettlerConfig(retry_base_s=1.0, retry_max_s=3.0)
    rounds = Rounds(Settler(ledger, refusing, 1000, max_attempts=4), settings, metrics)
    assert [rounds.tick() for _ in range(4)] == [1.0, 2.0, 3.0, 3.0]
    assert metrics.failures.labels("refused")._value.get() == 4
    assert rounds.tick() == CHECK_S, "failed for good: the next round has nothing to do, and succeeds"
