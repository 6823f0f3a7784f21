import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from sqlalchemy import Engine

from tritonfleet.payments.charge_writer import ChargeWriter
from tritonfleet.payments.credit import CreditBook
from tritonfleet.payments.errors import InsufficientCredit, WriterClosed
from tritonfleet.payments.ledger import Clock, Ledger
from tritonfleet.payments.money import Credit
from tritonfleet.payments.records import NewCharge


class SpyLedger(Ledger):
    """The real ledger, noting the size of every group it is asked to record."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        super().__init__(engine, clock)
        self.groups: list[int] = []

    def record_committed(self, charges: Sequence[NewCharge]) -> list[str]:
        self.groups.append(len(charges))
        return super().record_committed(charges)


class FlakyLedger(SpyLedger):
    """Fails its first write, as a database gone for a moment would."""

    def record_committed(self, charges: Sequence[NewCharge]) -> list[str]:
        if not self.groups:
            self.groups.append(len(charges))
            raise RuntimeError("database unreachable")
        return super().record_committed(charges)


def charge(request_id: str, account: str = "alice", amount: int = 1) -> NewCharge:
    return NewCharge(request_id, account, "simple", "1", Credit(amount))


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "charge-writer"]


@pytest.fixture(autouse=True)
def no_leaked_writer() -> Iterator[None]:
    yield
    assert writer_threads() == [], "a ChargeWriter thread outlived its test"


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[SpyLedger]:
    with SpyLedger.open(ledger_url) as opened:
        yield opened


@pytest.fixture
async def writer(ledger: SpyLedger) -> AsyncIterator[ChargeWriter]:
    started = ChargeWriter(ledger)
    started.start()
    yield started
    await started.aclose()


def queue(writer: ChargeWriter, charges: Sequence[NewCharge]) -> list[asyncio.Task[bool]]:
    return [asyncio.create_task(writer.commit(each)) for each in charges]


async def test_a_commit_resolves_true_once_the_charge_is_in_the_ledger(
    writer: ChargeWriter, ledger: SpyLedger
) -> None:
    assert await writer.commit(charge("r1", amount=3)) is True
    assert [(c.request_id, c.amount) for c in ledger.usage("alice")] == [("r1", 3)]


async def test_a_request_id_committed_again_resolves_false(writer: ChargeWriter, ledger: SpyLedger) -> None:
    assert await writer.commit(charge("r1")) is True
    assert await writer.commit(charge("r1")) is False
    assert await asyncio.gather(writer.commit(charge("r2")), writer.commit(charge("r2"))) == [True, False]
    assert ledger.unsettled_by_account() == {"alice": 2}


async def test_everything_queued_is_written_in_one_transaction(ledger: SpyLedger) -> None:
    writer = ChargeWriter(ledger)
    waiting = queue(writer, [charge(f"r{i}") for i in range(200)])
    await asyncio.sleep(0)
    writer.start()
    assert all(await asyncio.gather(*waiting))
    await writer.aclose()
    assert ledger.groups == [200]


async def test_a_group_holds_at_most_max_group_charges(ledger: SpyLedger) -> None:
    writer = ChargeWriter(ledger, max_group=64)
    waiting = queue(writer, [charge(f"r{i}") for i in range(200)])
    await asyncio.sleep(0)
    writer.start()
    await asyncio.gather(*waiting)
    await writer.aclose()
    assert ledger.groups == [64, 64, 64, 8]


async def test_closing_drains_the_queue_then_refuses_charges(ledger: SpyLedger) -> None:
    writer = ChargeWriter(ledger)
    writer.start()
    waiting = queue(writer, [charge(f"r{i}") for i in range(50)])
    await asyncio.sleep(0)
    await writer.aclose()
    assert ledger.unsettled_by_account() == {"alice": 50}
    assert all(await asyncio.gather(*waiting))
    with pytest.raises(WriterClosed):
        await writer.commit(charge("late"))


async def test_closing_a_writer_never_started_still_writes_its_queue(ledger: SpyLedger) -> None:
    writer = ChargeWriter(ledger)
    waiting = queue(writer, [charge("r1"), charge("r2")])
    await asyncio.sleep(0)
    await writer.aclose()
    assert await asyncio.gather(*waiting) == [True, True]


async def test_a_failed_write_fails_its_group_and_the_next_group_goes_through(ledger_url: str) -> None:
    with FlakyLedger.open(ledger_url) as ledger:
        writer = ChargeWriter(ledger)
        first = queue(writer, [charge("r1"), charge("r2")])
        await asyncio.sleep(0)
        writer.start()
        outcomes = await asyncio.gather(*first, return_exceptions=True)
        assert [str(outcome) for outcome in outcomes] == ["database unreachable"] * 2
        assert await writer.commit(charge("r1")) is True
        await writer.aclose()
        assert ledger.unsettled_by_account() == {"alice": 1}


async def test_a_cancelled_committer_still_gets_its_charge_written(ledger: SpyLedger) -> None:
    writer = ChargeWriter(ledger)
    (waiting,) = queue(writer, [charge("r1")])
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    writer.start()
    await writer.aclose()
    assert ledger.unsettled_by_account() == {"alice": 1}


async def test_32_committers_of_one_account_spend_the_deposit_and_no_more(
    writer: ChargeWriter, ledger: SpyLedger
) -> None:
    deposit = 600
    book = CreditBook()
    book.set_deposit("alice", Credit(deposit))
    refused = 0

    async def committer(worker: int) -> None:
        nonlocal refused
        for n in range(100):
            request_id = f"w{worker}-{n}"
            try:
                held = book.reserve("alice", request_id, Credit(1 + n % 3))
            except InsufficientCredit:
                refused += 1
                continue
            await asyncio.sleep(0)  # the inference
            if await writer.commit(charge(request_id, amount=held.amount)):
                book.commit(held)
            else:
                book.release(held)

    await asyncio.gather(*(committer(w) for w in range(32)))
    unsettled = ledger.unsettled_by_account()["alice"]
    assert unsettled == book.snapshot("alice").unsettled
    assert deposit - 2 <= unsettled <= deposit
    assert refused > 0
    # Group commit: many charges per transaction, not one each.
    assert len(ledger.groups) < len(ledger.usage("alice", limit=1000)) / 4
