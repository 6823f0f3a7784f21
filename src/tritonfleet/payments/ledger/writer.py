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
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence

from tritonfleet.logs import setup_logging
from tritonfleet.payments.errors import LedgerError, WriterClosed
from tritonfleet.payments.ledger.database import create_ledger_engine
from tritonfleet.payments.ledger.records import NewCharge
from tritonfleet.payments.ledger.store import Ledger

log = logging.getLogger(__name__)

# How long the writer waits before starting a process again after one died.
RESTART_DELAY_S = 0.5
# What the process reads at a time from its pipe.
_READ_BYTES = 1 << 20


# Who waits for each charge of one line sent to the process, in the line's order.
_Waiting = list[asyncio.Future[bool]]


class ChargeWriter:
    """Writes committed charges to the ledger in groups, from a process of its own.

    `commit` resolves to True once the charge is durable, False if its request id was already
    recorded (a retried request: it must not be charged again), and raises LedgerError when
    the ledger refused the group or the process died before answering. A process that dies is
    started again, and what was queued meanwhile is written then. `aclose` stops accepting,
    writes what is queued, and waits for the process to end.
    """

    def __init__(self, ledger_url: str, max_group: int = 1000) -> None:
        self._ledger_url = ledger_url
        self._max_group = max_group
        self._queued: list[tuple[NewCharge, asyncio.Future[bool]]] = []
        self._in_flight: collections.deque[_Waiting] = collections.deque()
        self._process: asyncio.subprocess.Process | None = None
        self._runner: asyncio.Task[None] | None = None
        self._flush_scheduled = False
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the process and return once it has opened the ledger."""
        started = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run(started), name="charge writer")
        await started

    async def commit(self, charge: NewCharge) -> bool:
        if self._closed:
            raise WriterClosed("the charge writer is closed")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._queued.append((charge, done))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        # A caller cancelled meanwhile cancels `done` only: its charge is still written (the
        # inference did succeed), and the answer for it is dropped.
        return await done

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
            process.stdin.write(json.dumps([_fields(charge) for charge, _ in part]).encode() + b"\n")
            self._in_flight.append([done for _, done in part])

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
            self._flush()
            try:
                await self._read_answers(self._process)
            except Exception:
                # An answer we cannot follow: start afresh rather than leave charges waiting.
                log.exception("unreadable answer from the charge writer process; restarting it")
                self._process.kill()
            code = await self._process.wait()
            self._process = None
            self._fail_in_flight(LedgerError(f"the charge writer process ended (exit status {code})"))
            if self._closed and not self._queued:
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
        settings = {"ledger_url": self._ledger_url, "max_group": self._max_group}
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
            # must leave its charges to `_fail_in_flight`, not in limbo.
            outcome = json.loads(answer)
            waiting = self._in_flight[0]
            results: list[bool | Exception]
            if "error" in outcome:
                results = [LedgerError(f"cannot record charges: {outcome['error']}")] * len(waiting)
            else:
                results = [bool(new) for new in outcome["new"]]
                if len(results) != len(waiting):
                    raise ValueError(f"an answer for {len(results)} charges to a line of {len(waiting)}")
            self._in_flight.popleft()
            for done, result in zip(waiting, results, strict=True):
                _resolve(done, result)
            self._flush()

    def _fail_in_flight(self, error: LedgerError) -> None:
        while self._in_flight:
            for done in self._in_flight.popleft():
                _resolve(done, error)


def _fields(charge: NewCharge) -> tuple[str, str, str, str, int, str]:
    return (charge.request_id, charge.account, charge.model, charge.version, charge.amount, charge.key_id)


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
    ledger = Ledger(create_ledger_engine(options["ledger_url"]))
    try:
        _write_all(sys.stdout.fileno(), b"ready\n")
        for lines in itertools.chain([early], batches):
            charges = [[NewCharge(*fields) for fields in json.loads(line)] for line in lines]
            answers = b"".join(_record(ledger, group) for group in _groups(charges, options["max_group"]))
            _write_all(sys.stdout.fileno(), answers)
    finally:
        ledger.close()
    return 0


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


def _groups(lines: list[list[NewCharge]], max_group: int) -> Iterator[list[list[NewCharge]]]:
    """Consecutive lines, as many per transaction as fit in `max_group` charges."""
    group: list[list[NewCharge]] = []
    for line in lines:
        if group and sum(map(len, group)) + len(line) > max_group:
            yield group
            group = []
        group.append(line)
    if group:
        yield group


def _record(ledger: Ledger, lines: Sequence[list[NewCharge]]) -> bytes:
    """One transaction for these lines; one answer line each: which of its charges were new."""
    try:
        new = set(ledger.record_committed([charge for line in lines for charge in line]))
    except Exception as exc:
        log.warning("cannot record %d charges", sum(map(len, lines)), exc_info=True)
        return b"".join(json.dumps({"error": str(exc)}).encode() + b"\n" for _ in lines)
    answers = []
    for line in lines:
        # A request id twice among these charges: only its first commit is new.
        flags = []
        for charge in line:
            flags.append(charge.request_id in new)
            new.discard(charge.request_id)
        answers.append(json.dumps({"new": flags}).encode() + b"\n")
    return b"".join(answers)


if __name__ == "__main__":
    sys.exit(main())
