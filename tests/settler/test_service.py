"""The settler against a real anvil and a real ledger: exactly once, whatever crashes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.devnet import deployed_chain, depositor, new_anvil
from tritonfleet.payments.chain.client import SignedTx
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.ledger.database import sqlite_url
from tritonfleet.payments.ledger.records import NewCharge
from tritonfleet.payments.ledger.states import BatchState
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.money import Credit
from tritonfleet.settler import service as settler_module
from tritonfleet.settler.service import Settler


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(sqlite_url(tmp_path / "ledger.sqlite")) as opened:
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


class FaucetRace(DevChain):
    """The real chain, but the dev faucet, which shares the operator's key, sends a transaction
    between the settler's signing and its broadcast, taking the nonce the settler signed with."""

    def broadcast(self, signed: SignedTx) -> str:
        if not getattr(self, "raced", False):
            self.raced = True
            self.mint(self.operator.address, Credit(1))
        return super().broadcast(signed)


def crashing(chain: DevChain, kind: type[DevChain] = CrashAfterSend) -> DevChain:
    crash = kind(chain.rpc_url, chain.chain_id, chain.operator, poll_interval_s=0.02)
    crash.use(chain.deployment)
    return crash


def charge(ledger: Ledger, account: str, *amounts: int) -> None:
    start = len(ledger.usage(account, limit=10**6))
    ledger.record_committed(
        [
            NewCharge(f"{account}-{start + i}", account, "simple", "1", Credit(a))
            for i, a in enumerate(amounts)
        ]
    )


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


def test_a_nonce_taken_by_the_faucet_is_signed_again_with_a_fresh_one(
    chain: DevChain, ledger: Ledger
) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 7)
    assert Settler(ledger, crashing(chain, FaucetRace), max_charges=1000).settle_pending() == 1
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
    chain.mint(chain.operator.address, Credit(1))  # the faucet takes the recorded nonce
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
        assert settler.settle_pending() == 0
        assert ledger.unsettled_by_account() == {alice.address: 5}, "nothing is lost meanwhile"
        anvil.start()
        assert settler.settle_pending() == 1
        assert chain.deposit_of(alice.address) == 95
    finally:
        anvil.stop()
