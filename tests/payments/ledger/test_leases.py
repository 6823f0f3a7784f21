"""Credit leases in the ledger, on real SQLite and PostgreSQL: what gateways may spend.

free = deposit - pending withdrawal - unsettled - settled after the chain view
       - outstanding (amount - spent) of every holder's live leases
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading

from sqlalchemy import func, select, update

from tests.fakes import FakeClock
from tritonfleet.payments.ledger.database import write_transaction
from tritonfleet.payments.ledger.records import LeaseGrant, NewCharge
from tritonfleet.payments.ledger.schema import BatchRow, CreditLeaseRow
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.money import Credit

TTL_S = 30.0
# The block of the chain view that deposits are given as of, unless a test says otherwise.
BLOCK = 100


def take(
    ledger: Ledger,
    holder: str,
    want: int,
    *,
    deposit: int = 100,
    pending: int = 0,
    block: int = BLOCK,
    ttl_s: float = TTL_S,
    lease_id: str | None = None,
    account: str = "alice",
) -> LeaseGrant:
    return ledger.take_lease(
        holder,
        account,
        Credit(want),
        deposit=Credit(deposit),
        pending_withdrawal=Credit(pending),
        chain_block=block,
        ttl_s=ttl_s,
        lease_id=lease_id,
    )


def charge(request_id: str, amount: int, lease_id: str | None = None, account: str = "alice") -> NewCharge:
    return NewCharge(request_id, account, "simple", "1", Credit(amount), lease_id=lease_id)


def lease_rows(ledger: Ledger) -> int:
    with ledger._engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(CreditLeaseRow)) or 0)


# Grants


def test_a_grant_is_what_was_asked_within_the_free_credit(ledger: Ledger, clock: FakeClock) -> None:
    ledger.record_committed([charge("r1", 15), charge("r2", 5)])
    first = take(ledger, "gw-a", 50, deposit=100, pending=10)
    assert (first.granted, first.free) == (50, 20), "100 - 10 pending - 20 unsettled - 50"
    assert first.expires_at_s == clock.now_s + TTL_S
    assert first.oldest_unsettled_at_s == clock.now_s
    second = take(ledger, "gw-b", 50, deposit=100, pending=10)
    assert (second.granted, second.free) == (20, 0), "only what the first lease left"
    third = take(ledger, "gw-c", 5, deposit=100, pending=10)
    assert third.granted == 0
    assert ledger.leased("alice") == 70


def test_a_deposit_short_of_what_is_unsettled_grants_nothing(ledger: Ledger) -> None:
    ledger.record_committed([charge("r1", 8)])
    grant = take(ledger, "gw-a", 10, deposit=5)
    assert grant.granted == 0 and grant.free <= 0
    assert ledger.leased("alice") == 0


def test_grants_to_one_account_leave_another_untouched(ledger: Ledger) -> None:
    take(ledger, "gw-a", 100, deposit=100)
    assert take(ledger, "gw-a", 40, deposit=40, account="bob").granted == 40
    assert (ledger.leased("alice"), ledger.leased("bob")) == (100, 40)


def test_a_live_lease_grows_under_its_own_id_and_is_renewed(ledger: Ledger, clock: FakeClock) -> None:
    first = take(ledger, "gw-a", 30)
    clock.advance(TTL_S - 1)
    more = take(ledger, "gw-a", 20, lease_id=first.lease_id)
    assert (more.lease_id, more.granted, more.expires_at_s) == (first.lease_id, 20, clock.now_s + TTL_S)
    clock.advance(TTL_S - 1)  # past the first expiry, within the renewed one
    assert ledger.leased("alice") == 50


def test_another_holders_lease_id_is_not_extended(ledger: Ledger) -> None:
    theirs = take(ledger, "gw-a", 30)
    mine = take(ledger, "gw-b", 20, lease_id=theirs.lease_id)
    assert mine.lease_id != theirs.lease_id and mine.granted == 20
    assert ledger.renew_leases("gw-a", [theirs.lease_id, mine.lease_id], TTL_S) == {theirs.lease_id}


def test_3_holders_racing_from_threads_share_the_deposit_and_no_more(ledger_url: str, ledger: Ledger) -> None:
    # 300 credit at a price of 1 pays for 300 inferences: together they get exactly that.
    barrier = threading.Barrier(3)
    grants: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def holder(name: str) -> None:
        try:
            with Ledger.open(ledger_url, clock=ledger._clock) as mine:
                barrier.wait()
                grants[name] = take_until_nothing_is_free(mine, name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=holder, args=(f"gw-{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(map(sum, grants.values())) == 300
    assert ledger.leased("alice") == 300


def take_until_nothing_is_free(ledger: Ledger, holder: str) -> list[int]:
    """Ask for 7 at a time, more than the last grant of 300 leaves, until nothing comes."""
    granted, lease_id = [], None
    while True:
        grant = take(ledger, holder, 7, deposit=300, ttl_s=600, lease_id=lease_id)
        if grant.granted == 0:
            return granted
        granted.append(grant.granted)
        lease_id = grant.lease_id


# A holder in a process of its own: opens the ledger, says "ready", waits for "go", then takes
# leases until nothing is free and prints what it was granted.
RACING_HOLDER = """
import json, sys
from tests.payments.ledger.test_leases import take_until_nothing_is_free
from tritonfleet.payments.ledger.store import Ledger

url, holder = sys.argv[1:]
with Ledger.open(url) as ledger:
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(take_until_nothing_is_free(ledger, holder)), flush=True)
"""


def test_3_holders_racing_from_processes_share_the_deposit_and_no_more(ledger_url: str) -> None:
    # Separate processes, separate connections: only the database can serialize them.
    with Ledger.open(ledger_url) as ledger, contextlib.ExitStack() as stack:
        holders = [
            stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-c", RACING_HOLDER, ledger_url, f"gw-{i}"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
            for i in range(3)
        ]
        for process in holders:
            stack.callback(process.kill)  # runs before Popen's exit waits for it
        pipes = [(process.stdin, process.stdout) for process in holders]
        for _, answers in pipes:
            assert answers is not None and answers.readline() == "ready\n"
        for go, _ in pipes:
            assert go is not None
            go.write("go\n")
            go.flush()
        grants = []
        for _, answers in pipes:
            assert answers is not None
            grants.append(json.loads(answers.readline()))
        assert [process.wait(timeout=60) for process in holders] == [0, 0, 0]
        assert sum(map(sum, grants)) == 300
        assert ledger.leased("alice") == 300


# Charges under a lease


def test_charges_recorded_under_a_lease_spend_it_and_count_once(ledger: Ledger) -> None:
    lease = take(ledger, "gw-a", 60)
    ledger.record_committed([charge(f"r{i}", 10, lease.lease_id) for i in range(3)])
    assert ledger.leased("alice") == 30
    assert ledger.unsettled_by_account() == {"alice": 30}
    # 100 - 30 unsettled - 30 still leased: a charge counted as both would leave 10.
    assert take(ledger, "gw-b", 100).granted == 40
    # A charge recorded again is not new, and spends nothing.
    assert ledger.record_committed([charge("r0", 10, lease.lease_id)]) == []
    assert ledger.leased("alice") == 70


def test_an_overspent_lease_holds_nothing_rather_than_less_than_nothing(ledger: Ledger) -> None:
    lease = take(ledger, "gw-a", 10)
    ledger.record_committed([charge("r1", 15, lease.lease_id)])
    assert ledger.leased("alice") == 0
    assert take(ledger, "gw-b", 100).granted == 85


def test_a_charge_of_a_lease_the_ledger_no_longer_has_is_still_unsettled(ledger: Ledger) -> None:
    ledger.record_committed([charge("r1", 10, "gone")])
    assert take(ledger, "gw-a", 100).granted == 90


# Lapses, renewals, returns


def test_a_lapsed_lease_frees_what_it_held_and_cannot_be_extended(ledger: Ledger, clock: FakeClock) -> None:
    held = take(ledger, "gw-a", 100)
    ledger.record_committed([charge("r1", 10, held.lease_id)])
    assert take(ledger, "gw-b", 100).granted == 0
    clock.advance(TTL_S + 1)
    assert ledger.leased("alice") == 0
    # Its outstanding 90 is free to others; its charge of 10 still counts.
    other = take(ledger, "gw-b", 100)
    assert other.granted == 90
    late = take(ledger, "gw-a", 5, lease_id=held.lease_id)
    assert late.lease_id != held.lease_id, "what it held was someone else's meanwhile"
    assert late.granted == 0
    assert ledger.renew_leases("gw-a", [held.lease_id], TTL_S) == set()


def test_renewal_extends_only_the_live_leases_of_that_holder(ledger: Ledger, clock: FakeClock) -> None:
    kept = take(ledger, "gw-a", 30)
    lapsing = take(ledger, "gw-a", 40, account="bob", ttl_s=5)
    others = take(ledger, "gw-b", 20)
    clock.advance(10)
    renewed = ledger.renew_leases("gw-a", [kept.lease_id, lapsing.lease_id, others.lease_id, "unknown"], 60)
    assert renewed == {kept.lease_id}
    clock.advance(TTL_S)  # past the first expiry: only the renewed lease lives
    assert (ledger.leased("alice"), ledger.leased("bob")) == (30, 0)


def test_renewal_forgets_leases_lapsed_for_over_a_ttl(ledger: Ledger, clock: FakeClock) -> None:
    old = take(ledger, "gw-a", 30)
    clock.advance(TTL_S + 1)
    ledger.renew_leases("gw-b", [], TTL_S)
    assert lease_rows(ledger) == 1, "lapsed, but within a ttl of it"
    clock.advance(TTL_S)
    ledger.renew_leases("gw-b", [], TTL_S)
    assert lease_rows(ledger) == 0
    # A late charge of it finds no lease to spend, which changes nothing.
    ledger.record_committed([charge("late", 5, old.lease_id)])
    assert take(ledger, "gw-b", 100).granted == 95


def test_returned_credit_is_free_again_and_an_empty_lease_closes(ledger: Ledger) -> None:
    lease = take(ledger, "gw-a", 50)
    ledger.record_committed([charge("r1", 10, lease.lease_id)])
    ledger.return_lease(lease.lease_id, Credit(15))
    assert ledger.leased("alice") == 25
    assert take(ledger, "gw-b", 100, ttl_s=1).granted == 65, "100 - 10 charged - 25 still leased"
    ledger.return_lease(lease.lease_id, Credit(25))
    assert lease_rows(ledger) == 1, "gw-a's lease is closed; gw-b's stays"
    reopened = take(ledger, "gw-a", 1, lease_id=lease.lease_id)
    assert reopened.lease_id != lease.lease_id


# The chain view and debts


def test_charges_settled_after_the_chain_view_still_count(ledger: Ledger) -> None:
    ledger.record_committed([charge("r1", 30)])
    batch = ledger.build_batch(max_charges=10)
    assert batch is not None
    ledger.mark_confirmed(batch.batch_id, block=BLOCK + 2)
    # A view older than the settlement still shows the deposit from before it.
    assert take(ledger, "gw-a", 100, deposit=100, block=BLOCK + 1, ttl_s=0).granted == 70
    # A view that has it shows the deposit it left, and the charges count no more.
    assert take(ledger, "gw-a", 100, deposit=70, block=BLOCK + 2, ttl_s=0).granted == 70


def test_a_batch_given_its_block_directly_counts_the_same(ledger: Ledger) -> None:
    # The settler's confirmation as a bare row update: only the column matters to a grant.
    ledger.record_committed([charge("r1", 30), charge("b1", 50, account="bob")])
    batch = ledger.build_batch(max_charges=10)
    assert batch is not None
    ledger.mark_confirmed(batch.batch_id)
    with write_transaction(ledger._engine) as connection:
        connection.execute(update(BatchRow).values(confirmed_block=BLOCK + 5))
    assert take(ledger, "gw-a", 100, deposit=100, block=BLOCK, ttl_s=0).granted == 70
    assert take(ledger, "gw-a", 100, deposit=100, block=BLOCK + 5, ttl_s=0).granted == 100


def test_a_debt_lowers_the_free_credit(ledger: Ledger) -> None:
    ledger.record_committed([charge("r1", 30)])
    batch = ledger.build_batch(max_charges=10)
    assert batch is not None
    # The deposit held 26 of the 30: the account owes 4, which the next deposit pays.
    ledger.mark_confirmed(batch.batch_id, block=BLOCK, debts=[("alice", Credit(4))])
    assert ledger.totals("alice").debt == 4
    assert take(ledger, "gw-a", 100, deposit=10, block=BLOCK).granted == 6


# Resent charges: a writer process that died between COMMIT and its answer


def test_a_resent_charge_from_its_own_lease_is_new_and_spends_the_lease_once(ledger: Ledger) -> None:
    lease = take(ledger, "gw-a", 50)
    first = charge("r1", 10, lease.lease_id)
    assert ledger.record_committed([first]) == [("alice", "r1")]
    assert ledger.record_committed([first]) == [], "not resent: a replay"
    resent = [first, charge("r2", 5, lease.lease_id)]
    assert ledger.record_committed(resent, resent=True) == [("alice", "r1"), ("alice", "r2")]
    assert ledger.leased("alice") == 35, "50 - 10 - 5: r1 spent it once"
    assert ledger.unsettled_by_account() == {"alice": 15}


def test_a_resent_charge_recorded_from_another_lease_is_not_new(ledger: Ledger) -> None:
    mine = take(ledger, "gw-a", 40)
    theirs = take(ledger, "gw-b", 40)
    assert ledger.record_committed([charge("r1", 10, theirs.lease_id)]) == [("alice", "r1")]
    # Another gateway's request with this id charged it: this one was not.
    assert ledger.record_committed([charge("r1", 10, mine.lease_id)], resent=True) == []
    assert ledger.record_committed([charge("r1", 10)], resent=True) == []
    assert ledger.leased("alice") == 40 + 30
    assert ledger.unsettled_by_account() == {"alice": 10}
