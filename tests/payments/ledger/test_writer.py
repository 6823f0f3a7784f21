"""The charge writer and its process, on real SQLite and PostgreSQL ledgers."""

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from sqlalchemy import text

from tritonfleet.payments.credit import CreditBook
from tritonfleet.payments.errors import InsufficientCredit, LedgerError, WriterClosed
from tritonfleet.payments.ledger.database import write_transaction
from tritonfleet.payments.ledger.records import NewCharge
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.ledger.writer import ChargeWriter
from tritonfleet.payments.money import Credit


def charge(request_id: str, account: str = "alice", amount: int = 1) -> NewCharge:
    return NewCharge(request_id, account, "simple", "1", Credit(amount))


def group_sizes(ledger: Ledger) -> list[int]:
    """How many charges each transaction recorded: a group's charges share one timestamp."""
    stamps = Counter(c.created_at_s for c in ledger.usage("alice", limit=10**6))
    return [stamps[stamp] for stamp in sorted(stamps)]


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as opened:
        yield opened


@pytest.fixture
async def writer(ledger_url: str, ledger: Ledger) -> AsyncIterator[ChargeWriter]:
    started = ChargeWriter(ledger_url)
    await started.start()
    yield started
    await started.aclose()


def queue(writer: ChargeWriter, charges: Sequence[NewCharge]) -> list[asyncio.Task[bool]]:
    return [asyncio.create_task(writer.commit(each)) for each in charges]


async def test_a_commit_resolves_true_once_the_charge_is_in_the_ledger(
    writer: ChargeWriter, ledger: Ledger
) -> None:
    assert await writer.commit(charge("r1", amount=3)) is True
    assert [(c.request_id, c.amount) for c in ledger.usage("alice")] == [("r1", 3)]


async def test_a_request_id_committed_again_resolves_false(writer: ChargeWriter, ledger: Ledger) -> None:
    assert await writer.commit(charge("r1")) is True
    assert await writer.commit(charge("r1")) is False
    assert await asyncio.gather(writer.commit(charge("r2")), writer.commit(charge("r2"))) == [True, False]
    assert ledger.unsettled_by_account() == {"alice": 2}


async def test_everything_queued_is_written_in_one_transaction(ledger_url: str, ledger: Ledger) -> None:
    writer = ChargeWriter(ledger_url)
    waiting = queue(writer, [charge(f"r{i}") for i in range(200)])
    await asyncio.sleep(0)
    await writer.start()
    assert all(await asyncio.gather(*waiting))
    await writer.aclose()
    assert group_sizes(ledger) == [200]


async def test_a_group_holds_at_most_max_group_charges(ledger_url: str, ledger: Ledger) -> None:
    writer = ChargeWriter(ledger_url, max_group=64)
    waiting = queue(writer, [charge(f"r{i}") for i in range(200)])
    await asyncio.sleep(0)
    await writer.start()
    await asyncio.gather(*waiting)
    await writer.aclose()
    assert group_sizes(ledger) == [64, 64, 64, 8]


async def test_closing_drains_the_queue_then_refuses_charges(ledger_url: str, ledger: Ledger) -> None:
    writer = ChargeWriter(ledger_url)
    await writer.start()
    waiting = queue(writer, [charge(f"r{i}") for i in range(50)])
    await asyncio.sleep(0)
    await writer.aclose()
    assert ledger.unsettled_by_account() == {"alice": 50}
    assert all(await asyncio.gather(*waiting))
    with pytest.raises(WriterClosed):
        await writer.commit(charge("late"))


async def test_closing_a_writer_never_started_still_writes_its_queue(ledger_url: str, ledger: Ledger) -> None:
    writer = ChargeWriter(ledger_url)
    waiting = queue(writer, [charge("r1"), charge("r2")])
    await asyncio.sleep(0)
    await writer.aclose()
    assert await asyncio.gather(*waiting) == [True, True]


async def test_a_failed_write_fails_its_group_and_the_next_group_goes_through(
    writer: ChargeWriter, ledger: Ledger
) -> None:
    # The table gone for a moment: a real refusal by the database.
    with write_transaction(ledger._engine) as connection:
        connection.execute(text("ALTER TABLE charge RENAME TO charge_away"))
    try:
        outcomes = await asyncio.gather(*queue(writer, [charge("r1"), charge("r2")]), return_exceptions=True)
    finally:
        with write_transaction(ledger._engine) as connection:
            connection.execute(text("ALTER TABLE charge_away RENAME TO charge"))
    assert all(isinstance(outcome, LedgerError) for outcome in outcomes), outcomes
    assert "charge" in str(outcomes[0])
    assert await writer.commit(charge("r1")) is True
    assert ledger.unsettled_by_account() == {"alice": 1}


async def test_a_killed_process_fails_what_it_held_and_another_takes_over(
    writer: ChargeWriter, ledger: Ledger
) -> None:
    assert await writer.commit(charge("r1")) is True
    first = writer.pid
    assert first is not None
    os.kill(first, signal.SIGSTOP)  # stopped, so that the next charge is surely in flight when it dies
    waiting = queue(writer, [charge("r2")])
    await asyncio.sleep(0.2)
    os.kill(first, signal.SIGKILL)
    (outcome,) = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(outcome, LedgerError) and "ended" in str(outcome)
    # A retry of that request, and new ones, go to the next process.
    assert await asyncio.gather(writer.commit(charge("r2")), writer.commit(charge("r3"))) == [True, True]
    assert writer.pid not in (None, first)
    assert ledger.unsettled_by_account() == {"alice": 3}


# A process that starts as the writer does, then answers something that is no answer.
GARBLING = (
    "import sys; sys.stdin.readline(); print('ready', flush=True); "
    "sys.stdin.readline(); print('?', flush=True)"
)


class GarbledFirst(ChargeWriter):
    """Its first process garbles its answer; the processes after it are the real one."""

    spawned = 0

    async def _spawn(self) -> asyncio.subprocess.Process:
        self.spawned += 1
        if self.spawned > 1:
            return await super()._spawn()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", GARBLING, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"{}\n")
        assert await process.stdout.readline() == b"ready\n"
        return process


async def test_an_unreadable_answer_fails_its_charges_and_a_real_process_takes_over(
    ledger_url: str, ledger: Ledger
) -> None:
    writer = GarbledFirst(ledger_url)
    await writer.start()
    try:
        with pytest.raises(LedgerError, match="ended"):
            await writer.commit(charge("r1"))
        assert await writer.commit(charge("r1")) is True, "the retry is charged, once"
        assert writer.spawned == 2
    finally:
        await writer.aclose()
    assert ledger.unsettled_by_account() == {"alice": 1}


async def test_a_cancelled_committer_still_gets_its_charge_written(ledger_url: str, ledger: Ledger) -> None:
    writer = ChargeWriter(ledger_url)
    (waiting,) = queue(writer, [charge("r1")])
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await writer.start()
    await writer.aclose()
    assert ledger.unsettled_by_account() == {"alice": 1}


async def test_32_committers_of_one_account_spend_the_deposit_and_no_more(
    writer: ChargeWriter, ledger: Ledger
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
    assert len(group_sizes(ledger)) < len(ledger.usage("alice", limit=1000)) / 4
