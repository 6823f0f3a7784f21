import asyncio
import random

import pytest

from tritonfleet.payments.credit import CreditBook, Reservation
from tritonfleet.payments.errors import (
    DuplicateReservation,
    InsufficientCredit,
    UnknownReservation,
)
from tritonfleet.payments.money import Credit


def book_with(deposit: int, account: str = "alice") -> CreditBook:
    book = CreditBook()
    book.set_deposit(account, Credit(deposit))
    return book


def test_available_is_deposit_less_withdrawal_unsettled_and_reserved() -> None:
    book = book_with(100)
    book.set_pending_withdrawal("alice", Credit(10))
    book.load_unsettled({"alice": Credit(20)})
    book.reserve("alice", "r1", Credit(5))
    snap = book.snapshot("alice")
    assert (snap.deposit, snap.pending_withdrawal, snap.unsettled, snap.reserved) == (100, 10, 20, 5)
    assert snap.available == book.available("alice") == 65


def test_a_reservation_beyond_available_credit_says_what_is_missing() -> None:
    book = book_with(10)
    book.reserve("alice", "r1", Credit(7))
    with pytest.raises(InsufficientCredit) as raised:
        book.reserve("alice", "r2", Credit(5))
    assert (raised.value.available, raised.value.missing, raised.value.status) == (3, 2, 402)
    assert book.snapshot("alice").reserved == 7


def test_an_unknown_account_has_no_credit() -> None:
    with pytest.raises(InsufficientCredit) as raised:
        CreditBook().reserve("nobody", "r1", Credit(1))
    assert (raised.value.available, raised.value.missing) == (0, 1)


def test_a_free_model_passes_even_without_credit() -> None:
    book = book_with(0)
    book.reserve("alice", "r1", Credit(0))


def test_commit_moves_reserved_to_unsettled_and_release_frees_it() -> None:
    book = book_with(10)
    kept = book.reserve("alice", "r1", Credit(3))
    dropped = book.reserve("alice", "r2", Credit(4))
    book.commit(kept)
    book.release(dropped)
    snap = book.snapshot("alice")
    assert (snap.unsettled, snap.reserved, snap.available) == (3, 0, 7)


def test_a_reservation_ends_once() -> None:
    book = book_with(10)
    held = book.reserve("alice", "r1", Credit(3))
    book.commit(held)
    with pytest.raises(UnknownReservation):
        book.release(held)
    with pytest.raises(UnknownReservation):
        book.commit(Reservation("alice", "r9", Credit(1)))
    assert book.snapshot("alice").unsettled == 3


def test_a_request_id_holds_one_reservation_at_a_time() -> None:
    book = book_with(10)
    book.reserve("alice", "r1", Credit(1))
    with pytest.raises(DuplicateReservation):
        book.reserve("alice", "r1", Credit(1))
    assert book.snapshot("alice").reserved == 1


def test_a_negative_price_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        book_with(10).reserve("alice", "r1", Credit(-1))


def test_a_confirmed_batch_lowers_deposit_and_unsettled_alike() -> None:
    book = book_with(100)
    book.commit(book.reserve("alice", "r1", Credit(30)))
    book.settled("alice", Credit(30))
    snap = book.snapshot("alice")
    assert (snap.deposit, snap.unsettled, snap.available) == (70, 0, 70)


def test_settling_more_than_is_known_floors_at_zero() -> None:
    book = book_with(5)
    book.settled("alice", Credit(8))
    snap = book.snapshot("alice")
    assert (snap.deposit, snap.unsettled, snap.available) == (0, 0, 0)


def test_available_credit_below_zero_refuses_every_priced_request_and_says_how_much_is_missing() -> None:
    book = book_with(5)
    book.reserve("alice", "r1", Credit(3))
    # Another gateway's charges settled: the vault took more than this book knew of.
    book.settled("alice", Credit(8))
    assert book.snapshot("alice").available == -3
    with pytest.raises(InsufficientCredit) as raised:
        book.reserve("alice", "r2", Credit(1))
    assert (raised.value.available, raised.value.missing) == (-3, 4)
    book.reserve("alice", "r3", Credit(0))  # a free model still passes


def test_loading_unsettled_replaces_every_account() -> None:
    book = book_with(100)
    book.set_deposit("bob", Credit(100))
    book.load_unsettled({"alice": Credit(40), "bob": Credit(10)})
    book.load_unsettled({"bob": Credit(20), "carol": Credit(1)})
    assert [book.snapshot(a).unsettled for a in ("alice", "bob", "carol")] == [0, 20, 1]


def test_a_pending_withdrawal_is_not_spendable() -> None:
    book = book_with(10)
    book.set_pending_withdrawal("alice", Credit(8))
    with pytest.raises(InsufficientCredit) as raised:
        book.reserve("alice", "r1", Credit(3))
    assert (raised.value.available, raised.value.missing) == (2, 1)
    assert book.snapshot("alice").reserved == 0


async def test_500_racing_reservations_get_exactly_the_deposit_and_no_more() -> None:
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
    assert book.snapshot("alice").available == 0


async def test_500_racing_requests_never_spend_more_than_the_deposit() -> None:
    deposit = 100
    book = book_with(deposit)
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
        assert snap.unsettled + snap.reserved <= deposit
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
    assert snap.unsettled <= deposit
    assert outcomes.count("refused") > 0 and outcomes.count("charged") > 0
    assert len(outcomes) == 500
