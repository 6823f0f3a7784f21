"""Group commit of charges, in a process of its own: the gateway's hot path writes through here.

Each successful inference awaits `ChargeWriter.commit(charge)`. While the writer process
records one group, the charges committed meanwhile queue; when it answers, they go to it
together as the next group (a line of JSON), recorded in one transaction. So an idle writer
takes a charge at once, and a busy one N charges for one fsync, not N.

Why a process and not a thread: a writer thread needs the GIL, which the event loop holds
almost all the time at saturation, so it waits far longer to wake and to write a group than the
write itself takes, and the paid gateway falls far behind the unpaid one (docs/benchmarks.md,
"Measurements behind the code"). The process writes beside the event loop, and the loop only
encodes a line per group and decodes the answer.

Failures are kept to the charges they concern. A group the database refuses is written again
one charge at a time, so one bad charge fails alone and the others are recorded. A process that
dies with lines unanswered may have committed them: the next process is sent those lines again,
marked as resent, and a charge it finds already recorded from the same lease is answered as
new, since it is this very charge (another request with its id would be refused as in flight
while this one's hold is open). So a crash between COMMIT and the answer costs the client
nothing but time, never a "try again" followed by "already charged".
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg
import sqlalchemy.exc

from tritonfleet.logs import setup_logging
from tritonfleet.payments.errors import LedgerError, WriterClosed
from tritonfleet.payments.ledger.database import create_ledger_engine
from tritonfleet.payments.ledger.records import ChargeKey, NewCharge
from tritonfleet.payments.ledger.store import Ledger

log = logging.getLogger(__name__)

# How long the writer waits before starting a process again after one died.
RESTART_DELAY_S = 0.5
# How often a line a dying process left unanswered is sent to the next one.
MAX_RESENDS = 2
# What the process reads at a time from its pipe.
_READ_BYTES = 1 << 20


@dataclass(slots=True)
class _Line:
    """One line sent to the process: its charges and who waits for each, in order."""

    charges: list[NewCharge]
    waiting: list[asyncio.Future[bool]]
    resent: int = 0

    def encode(self) -> bytes:
        fields = [_fields(charge) for charge in self.charges]
        return json.dumps({"charges": fields, "resent": self.resent > 0}).encode() + b"\n"


class ChargeWriter:
    """Writes committed charges to the ledger in groups, from a process of its own.

    `commit` resolves to True once the charge is durable, False if its request id was already
    recorded (a retried request: it must not be charged again), and raises LedgerError when
    the ledger refused the charge. A process that dies is started again, and what it left
    unanswered is sent to the next one (see the module docstring). `aclose` stops accepting,
    writes what is queued, and waits for the process to end. `backlog` is what waits: the
    gateway refuses new paid requests beyond a bound rather than let charges pile up.
    """

    def __init__(self, ledger_url: str, max_group: int = 1000, ledger_timeout_s: float = 5.0) -> None:
        self._ledger_url = ledger_url
        self._max_group = max_group
        self._ledger_timeout_s = ledger_timeout_s
        self._queued: list[tuple[NewCharge, asyncio.Future[bool]]] = []
        self._in_flight: collections.deque[_Line] = collections.deque()
        self._backlog = 0
        self._process: asyncio.subprocess.Process | None = None
        self._runner: asyncio.Task[None] | None = None
        self._flush_scheduled = False
        self._closed = False

    @property
    def backlog(self) -> int:
        """Charges handed in and not yet answered."""
        return self._backlog

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the process and return once it has opened the ledger."""
        started = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run(started), name="charge writer")
        await started

    async def commit(self, charge: NewCharge) -> bool:
        # A caller cancelled meanwhile cancels the future only: its charge is still written
        # (the inference did succeed), and the answer for it is dropped.
        return await self.submit(charge)

    def submit(self, charge: NewCharge) -> asyncio.Future[bool]:
        """Queue the charge; the future of `commit`'s answer, for a caller that may stop waiting
        for it (shield it) and still want to know."""
        if self._closed:
            raise WriterClosed("the charge writer is closed")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._queued.append((charge, done))
        self._backlog += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return done

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._runner is None:
            # Never started: start it now, so that whatever was queued is still written.
            await self.start()
        self._flush()
        assert self._runner is not None
        await self._runner

    def _flush(self) -> None:
        """Send what queued as the next group, in lines of at most `max_group` charges, unless
        a group is still being written; once closed and all answered, end the process's input."""
        self._flush_scheduled = False
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            return  # the runner flushes once a process is up
        if self._in_flight:
            return  # flushed again when the answer comes
        if not self._queued:
            if self._closed:
                process.stdin.close()  # the process exits once it has read everything
            return
        queued, self._queued = self._queued, []
        for start in range(0, len(queued), self._max_group):
            part = queued[start : start + self._max_group]
            line = _Line([charge for charge, _ in part], [done for _, done in part])
            process.stdin.write(line.encode())
            self._in_flight.append(line)

    async def _run(self, started: asyncio.Future[None]) -> None:
        """Keep a process running until closed: start it, feed it, read its answers."""
        while True:
            try:
                self._process = await self._spawn()
            except Exception as exc:
                if not started.done():
                    started.set_exception(exc)
                    return
                log.error("cannot start the charge writer", exc_info=True)
                await asyncio.sleep(RESTART_DELAY_S)
                continue
            if not started.done():
                started.set_result(None)
            self._resend_in_flight(self._process)
            self._flush()
            try:
                await self._read_answers(self._process)
            except Exception:
                # An answer we cannot follow: start afresh rather than leave charges waiting.
                log.exception("unreadable answer from the charge writer process; restarting it")
                self._process.kill()
            code = await self._process.wait()
            self._process = None
            if self._closed and not self._queued and not self._in_flight:
                return
            log.error("charge writer process died; starting another", extra={"exit_status": code})
            await asyncio.sleep(RESTART_DELAY_S)

    async def _spawn(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            __name__,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # Ctrl-C reaches the gateway only; the process ends when its input does.
            start_new_session=True,
            # stderr: the gateway's, for the process's logs.
        )
        assert process.stdin is not None and process.stdout is not None
        # The URL goes through the pipe: a password in argv would show in every `ps`.
        settings = {
            "ledger_url": self._ledger_url,
            "max_group": self._max_group,
            "ledger_timeout_s": self._ledger_timeout_s,
        }
        process.stdin.write(json.dumps(settings).encode() + b"\n")
        ready = await process.stdout.readline()
        if ready != b"ready\n":
            await process.wait()
            raise LedgerError(f"the charge writer did not start (exit status {process.returncode})")
        return process

    async def _read_answers(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while answer := await process.stdout.readline():
            # Read whole before the line leaves `_in_flight`: an answer that cannot be followed
            # must leave its charges to the next process, not in limbo.
            outcomes = json.loads(answer)["new"]
            line = self._in_flight[0]
            if len(outcomes) != len(line.waiting):
                raise ValueError(f"an answer for {len(outcomes)} charges to a line of {len(line.waiting)}")
            self._in_flight.popleft()
            self._backlog -= len(line.waiting)
            for done, outcome in zip(line.waiting, outcomes, strict=True):
                # An outcome is whether the charge was new, or why the ledger refused it.
                _resolve(
                    done,
                    LedgerError(f"cannot record the charge: {outcome}")
                    if isinstance(outcome, str)
                    else outcome,
                )
            self._flush()

    def _resend_in_flight(self, process: asyncio.subprocess.Process) -> None:
        """Lines a dead process left unanswered go to its successor first, marked as resent."""
        assert process.stdin is not None
        for line in list(self._in_flight):
            if line.resent == MAX_RESENDS:
                # Whatever kills the process may be in this line: it fails rather than loop.
                self._in_flight.remove(line)
                self._backlog -= len(line.waiting)
                for done in line.waiting:
                    _resolve(done, LedgerError("the charge writer process died writing this charge"))
                continue
            line.resent += 1
            process.stdin.write(line.encode())


def _fields(charge: NewCharge) -> tuple[str, str, str, str, int, str, str | None]:
    return (
        charge.request_id,
        charge.account,
        charge.model,
        charge.version,
        charge.amount,
        charge.key_id,
        charge.lease_id,
    )


def _resolve(done: asyncio.Future[bool], outcome: bool | Exception) -> None:
    if done.done():
        return  # its caller gave up; the charge was handled all the same
    if isinstance(outcome, Exception):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)


# --- the process -------------------------------------------------------------------------------


def main() -> int:
    setup_logging("charge-writer")
    # The gateway decides when this process ends, by closing its input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    batches = _line_batches(sys.stdin.fileno())
    settings, *early = next(batches, [b"{}"])
    options = json.loads(settings)
    ledger = Ledger(create_ledger_engine(options["ledger_url"], options["ledger_timeout_s"]))
    try:
        _write_all(sys.stdout.fileno(), b"ready\n")
        for raw_lines in itertools.chain([early], batches):
            lines = [_decode(raw) for raw in raw_lines]
            answers = b"".join(_record(ledger, group) for group in _groups(lines, options["max_group"]))
            _write_all(sys.stdout.fileno(), answers)
    finally:
        ledger.close()
    return 0


def _decode(raw: bytes) -> tuple[list[NewCharge], bool]:
    line = json.loads(raw)
    return [NewCharge(*fields) for fields in line["charges"]], line["resent"]


def _write_all(fd: int, data: bytes) -> None:
    # A write to a pipe may take only part of what is over its buffer's size.
    while data:
        data = data[os.write(fd, data) :]


def _line_batches(fd: int) -> Iterator[list[bytes]]:
    """The complete lines that each read of `fd` brings, until it ends."""
    pending = b""
    while chunk := os.read(fd, _READ_BYTES):
        *complete, pending = (pending + chunk).split(b"\n")
        if complete:
            yield complete


_DecodedLine = tuple[list[NewCharge], bool]

# The database cannot be reached or does not answer in time (each driver's error, and
# SQLAlchemy's); any other error may be one charge's, which the group tries singly.
_UNREACHABLE = (sqlite3.OperationalError, psycopg.OperationalError, sqlalchemy.exc.OperationalError)


def _groups(lines: list[_DecodedLine], max_group: int) -> Iterator[list[_DecodedLine]]:
    """Consecutive lines, as many per transaction as fit in `max_group` charges."""
    group: list[_DecodedLine] = []
    size = 0
    for line in lines:
        if group and size + len(line[0]) > max_group:
            yield group
            group, size = [], 0
        group.append(line)
        size += len(line[0])
    if group:
        yield group


def _record(ledger: Ledger, lines: Sequence[_DecodedLine]) -> bytes:
    """One transaction for these lines; one answer line each: for each of its charges, whether
    it was new, or why the ledger refused it.

    A refused group is written again one charge at a time, so that one charge the database
    refuses (a value it cannot store, say) fails alone rather than with everyone else's.
    """
    charges = [charge for line_charges, _ in lines for charge in line_charges]
    resent = any(was_resent for _, was_resent in lines)
    outcomes: dict[ChargeKey, bool | str]
    try:
        outcomes = dict.fromkeys(ledger.record_committed(charges, resent=resent), True)
    except _UNREACHABLE as exc:
        # Not this group's fault: the next group tries again, and one at a time would only
        # wait for the database once per charge.
        log.warning("cannot record %d charges", len(charges), exc_info=True)
        return b"".join(json.dumps({"new": [str(exc)] * len(line)}).encode() + b"\n" for line, _ in lines)
    except Exception:
        log.warning("cannot record %d charges; recording them one at a time", len(charges), exc_info=True)
        outcomes = {}
        for charge in charges:
            try:
                outcomes.update(dict.fromkeys(ledger.record_committed([charge], resent=resent), True))
            except Exception as exc:
                log.warning(
                    "cannot record a charge", extra={"request_id": charge.request_id, "error": str(exc)}
                )
                outcomes[charge.key] = str(exc)
    answers = []
    for line_charges, _ in lines:
        # A charge twice among these: only its first commit is new.
        flags = [outcomes.pop(charge.key, False) for charge in line_charges]
        answers.append(json.dumps({"new": flags}).encode() + b"\n")
    return b"".join(answers)


if __name__ == "__main__":
    sys.exit(main())
