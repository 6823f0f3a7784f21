"""The charge writer and its process, on real SQLite and PostgreSQL ledgers."""

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from sqlalchemy import text

from tritonfleet.payments.credit import CreditBook
from tritonfleet.payments.errors import InsufficientCredit, LedgerError, WriterClosed
from tritonfleet.payments.ledger import writer as writer_module
from tritonfleet.payments.ledger.database import write_transaction
from tritonfleet.payments.ledger.records import LeaseGrant, NewCharge
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.ledger.writer import MAX_RESENDS, ChargeWriter
from tritonfleet.payments.money import Credit


def charge(request_id: str, account: str = "alice", amount: int = 1) -> NewCharge:
    return NewCharge(request_id, account, "simple", "1", Credit(amount))


def group_sizes(ledger: Ledger) -> list[int]:
    """How many charges each transaction recorded: a group's charges share one timestamp."""
    stamps = Counter(c.created_at_s for c in ledger.usage("alice", limit=10**6))
    return [stamps[stamp] for stamp in sorted(stamps)]


def lease_for_alice(ledger: Ledger, holder: str, want: int, deposit: int) -> LeaseGrant:
    """A lease on alice's deposit, long enough to outlive the test."""
    return ledger.take_lease(
        holder,
        "alice",
        Credit(want),
        deposit=Credit(deposit),
        pending_withdrawal=Credit(0),
        chain_block=1,
        ttl_s=600,
    )


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


@pytest.fixture
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer waits before starting a process again; these tests need not."""
    monkeypatch.setattr(writer_module, "RESTART_DELAY_S", 0.01)


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


async def test_a_ledger_refusing_every_charge_fails_each_and_the_next_group_goes_through(
    writer: ChargeWriter, ledger: Ledger
) -> None:
    # The table gone for a moment: a real refusal by the database, of every charge.
    with write_transaction(ledger._engine) as connection:
        connection.execute(text("ALTER TABLE charge RENAME TO charge_away"))
    try:
        outcomes = await asyncio.gather(*queue(writer, [charge("r1"), charge("r2")]), return_exceptions=True)
    finally:
        with write_transaction(ledger._engine) as connection:
            connection.execute(text("ALTER TABLE charge_away RENAME TO charge"))
    assert all(isinstance(outcome, LedgerError) for outcome in outcomes), outcomes
    assert "charge" in str(outcomes[0])
    assert writer.backlog == 0
    assert await writer.commit(charge("r1")) is True
    assert ledger.unsettled_by_account() == {"alice": 1}


async def test_a_charge_the_database_cannot_store_fails_alone(ledger_url: str, ledger: Ledger) -> None:
    # What aiohttp makes of a \xff byte in a header: no UTF-8 encoding exists for it.
    unstorable = "\udcff"
    charges = (
        [charge(f"r{i}") for i in range(25)] + [charge(unstorable)] + [charge(f"r{i}") for i in range(25, 50)]
    )
    writer = ChargeWriter(ledger_url)
    waiting = queue(writer, charges)
    await asyncio.sleep(0)
    await writer.start()  # everything queued goes as one group
    try:
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        refused = outcomes.pop(25)
        assert isinstance(refused, LedgerError) and "surrogate" in str(refused)
        assert outcomes == [True] * 50
        assert await writer.commit(charge("after")) is True
    finally:
        await writer.aclose()
    assert ledger.unsettled_by_account() == {"alice": 51}


@pytest.mark.usefixtures("quick_restarts")
async def test_a_killed_process_leaves_its_lines_to_the_next_which_records_them(
    writer: ChargeWriter, ledger: Ledger
) -> None:
    assert await writer.commit(charge("r1")) is True
    first = writer.pid
    assert first is not None
    os.kill(first, signal.SIGSTOP)  # stopped, so that the next charge is surely in flight when it dies
    waiting = queue(writer, [charge("r2")])
    await asyncio.sleep(0.2)
    assert writer.backlog == 1
    os.kill(first, signal.SIGKILL)
    assert await waiting[0] is True, "resent to the next process, and recorded"
    assert writer.pid not in (None, first)
    # A retry of that request is a replay now; new ones go through.
    assert await asyncio.gather(writer.commit(charge("r2")), writer.commit(charge("r3"))) == [False, True]
    assert writer.backlog == 0
    assert ledger.unsettled_by_account() == {"alice": 3}


# A process that starts as the writer does, then answers something that is no answer.
GARBLING = (
    "import sys; sys.stdin.readline(); print('ready', flush=True); "
    "sys.stdin.readline(); print('?', flush=True)"
)

# A process that records its first line as the writer does, then exits without answering: a
# writer killed between its COMMIT and its answer.
RECORDS_THEN_DIES = """
import json, sys
from tritonfleet.payments.ledger.database import create_ledger_engine
from tritonfleet.payments.ledger.records import LeaseGrant, NewCharge
from tritonfleet.payments.ledger.store import Ledger

settings = json.loads(sys.stdin.readline())
print("ready", flush=True)
line = json.loads(sys.stdin.readline())
ledger = Ledger(create_ledger_engine(settings["ledger_url"]))
ledger.record_committed([NewCharge(*fields) for fields in line["charges"]], resent=line["resent"])
ledger.close()
"""


class FakeFirst(ChargeWriter):
    """Its first `fakes` processes run `script`; the processes after them are the real one."""

    def __init__(self, ledger_url: str, script: str, fakes: int = 1) -> None:
        super().__init__(ledger_url)
        self.script = script
        self.fakes = fakes
        self.spawned = 0

    async def _spawn(self) -> asyncio.subprocess.Process:
        self.spawned += 1
        if self.spawned > self.fakes:
            return await super()._spawn()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", self.script, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps({"ledger_url": self._ledger_url}).encode() + b"\n")
        assert await process.stdout.readline() == b"ready\n"
        return process


@pytest.mark.usefixtures("quick_restarts")
async def test_an_unreadable_answer_leaves_its_charges_to_a_real_process(
    ledger_url: str, ledger: Ledger
) -> None:
    writer = FakeFirst(ledger_url, GARBLING)
    await writer.start()
    try:
        assert await writer.commit(charge("r1")) is True, "resent to the real process"
        assert await writer.commit(charge("r1")) is False, "charged once"
        assert writer.spawned == 2
    finally:
        await writer.aclose()
    assert ledger.unsettled_by_account() == {"alice": 1}


@pytest.mark.usefixtures("quick_restarts")
async def test_a_line_no_process_survives_fails_after_its_resends(ledger_url: str, ledger: Ledger) -> None:
    # Whatever kills each process may be in the line: it fails rather than loop for ever.
    writer = FakeFirst(ledger_url, GARBLING, fakes=MAX_RESENDS + 1)
    await writer.start()
    try:
        with pytest.raises(LedgerError, match="died"):
            await asyncio.wait_for(writer.commit(charge("r1")), 30)
        assert writer.backlog == 0
        assert await writer.commit(charge("r2")) is True, "a real process took over"
        assert writer.spawned == MAX_RESENDS + 2
    finally:
        await writer.aclose()
    assert [c.request_id for c in ledger.usage("alice")] == ["r2"]


@pytest.mark.usefixtures("quick_restarts")
async def test_a_charge_recorded_by_a_process_that_died_before_answering_is_charged_once(
    ledger_url: str, ledger: Ledger
) -> None:
    lease = lease_for_alice(ledger, "gw-a", want=10, deposit=100)
    writer = FakeFirst(ledger_url, RECORDS_THEN_DIES)
    await writer.start()
    try:
        served = NewCharge("r1", "alice", "simple", "1", Credit(3), lease_id=lease.lease_id)
        # Not "try again" (LedgerError), which a retry would meet with "already charged".
        assert await asyncio.wait_for(writer.commit(served), 30) is True
        assert writer.spawned == 2
    finally:
        await writer.aclose()
    assert [(c.request_id, c.amount, c.lease_id) for c in ledger.usage("alice")] == [
        ("r1", 3, lease.lease_id)
    ]
    assert ledger.leased("alice") == 7, "the lease spent once"


@contextlib.contextmanager
def charge_table_held(ledger: Ledger) -> Iterator[None]:
    """Another connection holds the charge table until exit: the ledger hangs for the writer."""
    with write_transaction(ledger._engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("LOCK TABLE charge IN ACCESS EXCLUSIVE MODE"))
        # SQLite: this transaction's BEGIN IMMEDIATE took the database's write lock.
        yield


async def test_a_hanging_ledger_fails_the_charges_in_time_and_they_pass_once_it_answers(
    ledger_url: str, ledger: Ledger
) -> None:
    writer = ChargeWriter(ledger_url, ledger_timeout_s=0.5)
    await writer.start()
    try:
        with charge_table_held(ledger):
            waiting = queue(writer, [charge("r1"), charge("r2")])
            await asyncio.sleep(0)
            assert writer.backlog == 2
            # Bounded by the ledger timeout, far inside this one: it raises, it does not hang.
            outcomes = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 10)
            assert all(isinstance(outcome, LedgerError) for outcome in outcomes), outcomes
            assert writer.backlog == 0
        assert await asyncio.wait_for(writer.commit(charge("r1")), 10) is True
    finally:
        await writer.aclose()
    assert ledger.unsettled_by_account() == {"alice": 1}


async def test_the_backlog_counts_charges_handed_in_and_not_yet_answered(
    ledger_url: str, ledger: Ledger
) -> None:
    writer = ChargeWriter(ledger_url)
    assert writer.backlog == 0
    waiting = queue(writer, [charge(f"r{i}") for i in range(5)])
    await asyncio.sleep(0)
    assert writer.backlog == 5, "queued before the process is up"
    await writer.start()
    try:
        assert all(await asyncio.gather(*waiting))
        assert writer.backlog == 0
        assert await writer.commit(charge("r0")) is False
        assert writer.backlog == 0, "a replay's answer counts too"
    finally:
        await writer.aclose()


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


async def test_32_committers_of_one_account_spend_their_lease_and_no_more(
    writer: ChargeWriter, ledger: Ledger
) -> None:
    deposit = 600
    grant = lease_for_alice(ledger, "gw-a", want=deposit, deposit=deposit)
    book = CreditBook()
    book.granted("alice", grant.lease_id, grant.granted)
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
            served = NewCharge(request_id, "alice", "simple", "1", held.amount, lease_id=held.lease_id)
            if await writer.commit(served):
                book.commit(held)
            else:
                book.release(held)

    await asyncio.gather(*(committer(w) for w in range(32)))
    unsettled = ledger.unsettled_by_account()["alice"]
    assert unsettled == book.snapshot("alice").charged
    assert deposit - 2 <= unsettled <= deposit
    assert refused > 0
    # Each charge spent the lease as it was recorded: nothing counts twice, nor is left over.
    assert ledger.leased("alice") == deposit - unsettled == book.free("alice")
    again = lease_for_alice(ledger, "gw-b", want=10, deposit=deposit)
    assert again.granted == 0
    # Group commit: many charges per transaction, not one each.
    assert len(group_sizes(ledger)) < len(ledger.usage("alice", limit=1000)) / 4
