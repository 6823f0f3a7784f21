"""The gateway's book of credit leases: pure, in memory, one asyncio loop."""

import asyncio
import random

import pytest

from tritonfleet.payments.credit import CreditBook, CreditSnapshot, LeaseSnapshot, Reservation
from tritonfleet.payments.errors import (
    DuplicateReservation,
    InsufficientCredit,
    UnknownReservation,
)
from tritonfleet.payments.money import Credit


def book_with(granted: int, account: str = "alice", lease_id: str = "lease-1") -> CreditBook:
    book = CreditBook()
    book.granted(account, lease_id, Credit(granted))
    return book


def figures(book: CreditBook, account: str = "alice") -> tuple[int, int, int, int]:
    snap = book.snapshot(account)
    return (snap.granted, snap.charged, snap.reserved, snap.free)


# Reserve, commit, release


def test_free_is_granted_less_charged_and_reserved() -> None:
    book = book_with(100)
    book.commit(book.reserve("alice", "r1", Credit(20)))
    book.reserve("alice", "r2", Credit(5))
    assert figures(book) == (100, 20, 5, 75)
    assert book.free("alice") == book.snapshot("alice").free == 75
    assert book.snapshot("alice").lease_id == "lease-1"


def test_a_reservation_carries_the_lease_it_was_held_from() -> None:
    held = book_with(10).reserve("alice", "r1", Credit(3))
    assert held == Reservation("alice", "r1", Credit(3), "lease-1")


def test_a_reservation_beyond_the_lease_says_what_is_missing() -> None:
    book = book_with(10)
    book.reserve("alice", "r1", Credit(7))
    with pytest.raises(InsufficientCredit) as raised:
        book.reserve("alice", "r2", Credit(5))
    assert (raised.value.available, raised.value.missing, raised.value.status) == (3, 2, 402)
    assert book.snapshot("alice").reserved == 7


def test_an_account_without_a_lease_has_no_credit() -> None:
    with pytest.raises(InsufficientCredit) as raised:
        CreditBook().reserve("nobody", "r1", Credit(1))
    assert (raised.value.available, raised.value.missing) == (0, 1)
    assert CreditBook().free("nobody") == 0


def test_a_free_model_passes_even_without_a_lease() -> None:
    held = CreditBook().reserve("alice", "r1", Credit(0))
    assert held.lease_id is None


def test_commit_moves_reserved_to_charged_and_release_frees_it() -> None:
    book = book_with(10)
    kept = book.reserve("alice", "r1", Credit(3))
    dropped = book.reserve("alice", "r2", Credit(4))
    book.commit(kept)
    book.release(dropped)
    assert figures(book) == (10, 3, 0, 7)


def test_a_reservation_ends_once() -> None:
    book = book_with(10)
    held = book.reserve("alice", "r1", Credit(3))
    book.commit(held)
    with pytest.raises(UnknownReservation):
        book.release(held)
    with pytest.raises(UnknownReservation):
        book.commit(Reservation("alice", "r9", Credit(1), "lease-1"))
    assert figures(book) == (10, 3, 0, 7)


def test_a_request_id_holds_one_reservation_at_a_time() -> None:
    book = book_with(10)
    book.reserve("alice", "r1", Credit(1))
    with pytest.raises(DuplicateReservation):
        book.reserve("alice", "r1", Credit(1))
    assert book.snapshot("alice").reserved == 1


def test_request_ids_are_scoped_per_account() -> None:
    # Request ids are the client's: bob choosing alice's id must neither block her nor be
    # blocked by her.
    book = book_with(10)
    book.granted("bob", "lease-b", Credit(10))
    alices = book.reserve("alice", "r1", Credit(2))
    bobs = book.reserve("bob", "r1", Credit(3))
    book.commit(bobs)
    assert figures(book, "bob") == (10, 3, 0, 7)
    assert figures(book, "alice") == (10, 0, 2, 8), "bob's commit took nothing of alice's"
    book.release(alices)
    assert figures(book, "alice") == (10, 0, 0, 10)


def test_a_negative_price_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        book_with(10).reserve("alice", "r1", Credit(-1))


# Grants, returns and lapses


def test_grants_to_the_same_lease_add_up() -> None:
    book = book_with(10)
    book.commit(book.reserve("alice", "r1", Credit(4)))
    book.granted("alice", "lease-1", Credit(5))
    assert figures(book) == (15, 4, 0, 11)


def test_a_lapsed_lease_keeps_what_is_in_flight_covered_and_frees_nothing() -> None:
    book = book_with(10)
    book.commit(book.reserve("alice", "r1", Credit(2)))
    kept = book.reserve("alice", "r2", Credit(3))
    dropped = book.reserve("alice", "r3", Credit(4))
    book.lapsed("alice")
    # Other gateways may take the lease's credit now: nothing is free here, but what is in
    # flight was held before the lapse and may still be charged.
    assert book.snapshot("alice").lease_id is None
    assert figures(book) == (7, 0, 7, 0)
    with pytest.raises(InsufficientCredit):
        book.reserve("alice", "r4", Credit(1))
    # Its charge spends the old lease in the ledger; here it frees nothing, charged or not.
    book.commit(kept)
    book.release(dropped)
    assert figures(book) == (0, 0, 0, 0)
    assert book.spending("alice") == 2, "only what was charged under a live lease"


def test_a_grant_with_a_new_lease_id_starts_a_new_lease_after_a_lapse() -> None:
    book = book_with(10)
    book.commit(book.reserve("alice", "r1", Credit(2)))
    in_flight = book.reserve("alice", "r2", Credit(3))
    book.lapsed("alice")
    book.granted("alice", "lease-2", Credit(20))
    assert book.snapshot("alice") == LeaseSnapshot("alice", "lease-2", Credit(23), Credit(0), Credit(3))
    assert book.free("alice") == 20, "only the new grant is free"
    new = book.reserve("alice", "r3", Credit(5))
    assert new.lease_id == "lease-2"
    # The old reservation ends against its own lease: the new one's figures do not move.
    book.commit(in_flight)
    assert figures(book) == (20, 0, 5, 15)
    book.commit(new)
    assert figures(book) == (20, 5, 0, 15)


def test_a_grant_under_another_lease_id_replaces_the_lease_the_book_knew() -> None:
    # The ledger found the old lease lapsed before the book did.
    book = book_with(10)
    book.commit(book.reserve("alice", "r1", Credit(6)))
    book.granted("alice", "lease-2", Credit(8))
    assert figures(book) == (8, 0, 0, 8)


def test_returned_credit_leaves_the_lease_but_only_what_is_free() -> None:
    book = book_with(10)
    book.reserve("alice", "r1", Credit(3))
    with pytest.raises(ValueError, match="returning"):
        book.returned("alice", Credit(8))
    book.returned("alice", Credit(7))
    assert figures(book) == (3, 0, 3, 0)


def test_spending_is_what_was_charged_since_the_previous_call() -> None:
    book = book_with(10)
    book.commit(book.reserve("alice", "r1", Credit(2)))
    book.commit(book.reserve("alice", "r2", Credit(3)))
    book.release(book.reserve("alice", "r3", Credit(4)))
    assert book.spending("alice") == 5
    assert book.spending("alice") == 0
    assert book.snapshot("alice").charged == 5, "the lease still counts it"


def test_only_a_closed_idle_account_is_forgotten() -> None:
    book = book_with(10)
    book.forget("alice")
    assert book.accounts() == ["alice"], "its lease is open"
    held = book.reserve("alice", "r1", Credit(1))
    book.lapsed("alice")
    book.forget("alice")
    assert book.accounts() == ["alice"], "a reservation is in flight"
    book.release(held)
    book.forget("alice")
    assert book.accounts() == []
    assert book.snapshot("alice") == LeaseSnapshot("alice", None, Credit(0), Credit(0), Credit(0))


def test_the_token_managers_snapshot_counts_what_leases_hold_as_unavailable() -> None:
    snap = CreditSnapshot("alice", Credit(100), Credit(10), Credit(20), reserved=Credit(5))
    assert snap.available == 65


# Racing requests


async def test_500_racing_reservations_get_exactly_the_lease_and_no_more() -> None:
    book = book_with(100)
    start = asyncio.Event()

    async def request(i: int) -> Reservation | None:
        await start.wait()
        try:
            return book.reserve("alice", f"r{i}", Credit(1))
        except InsufficientCredit:
            return None

    racing = [asyncio.create_task(request(i)) for i in range(500)]
    await asyncio.sleep(0)
    start.set()
    held = [r for r in await asyncio.gather(*racing) if r is not None]
    assert len(held) == 100
    assert figures(book) == (100, 0, 100, 0)


async def test_500_racing_requests_never_spend_more_than_the_lease() -> None:
    lease = 100
    book = book_with(lease)
    outcomes: list[str] = []
    rng = random.Random(7)

    async def request(i: int) -> None:
        await asyncio.sleep(0)
        try:
            held = book.reserve("alice", f"r{i}", Credit(1 + i % 3))
        except InsufficientCredit:
            outcomes.append("refused")
            return
        snap = book.snapshot("alice")
        assert snap.charged + snap.reserved <= lease
        # The inference: some take longer, a few fail.
        await asyncio.sleep(rng.random() / 1000)
        if i % 10 == 0:
            book.release(held)
            outcomes.append("failed")
        else:
            book.commit(held)
            outcomes.append("charged")

    await asyncio.gather(*(request(i) for i in range(500)))
    snap = book.snapshot("alice")
    assert snap.reserved == 0
    assert snap.charged <= lease
    assert outcomes.count("refused") > 0 and outcomes.count("charged") > 0
    assert len(outcomes) == 500
