"""Group commit of charges: the gateway's hot path writes to the ledger through here.

Each successful inference awaits `commit(charge)`. One background thread takes everything
queued since its last write and records it in one transaction, so N requests finishing
together cost one fsync instead of N, and the event loop never blocks on the database.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass

from tritonfleet.payments.errors import WriterClosed
from tritonfleet.payments.ledger import Ledger
from tritonfleet.payments.records import NewCharge

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pending:
    charge: NewCharge
    done: asyncio.Future[bool]
    loop: asyncio.AbstractEventLoop


# Put on the queue by `aclose`: everything queued before it is written, then the thread ends.
_STOP = None


class ChargeWriter:
    """Writes committed charges to the ledger in groups, from one background thread.

    `commit` resolves to True once the charge is durable, False if its request id was already
    recorded (a retried request: it must not be charged again). `aclose` stops accepting,
    writes what is queued, and waits for the thread.
    """

    def __init__(self, ledger: Ledger, max_group: int = 1000) -> None:
        self._ledger = ledger
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="charge-writer", daemon=True)
        self._closed = False

    def start(self) -> None:
        self._thread.start()

    async def commit(self, charge: NewCharge) -> bool:
        if self._closed:
            raise WriterClosed("the charge writer is closed")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._queue.put(_Pending(charge, done, loop))
        # A caller cancelled meanwhile cancels `done` only: its charge stays queued and is
        # written (the inference did succeed), and the writer skips the cancelled future.
        return await done

    async def aclose(self) -> None:
        if self._closed:
            return
        # Stop accepting; the thread drains what came before the stop mark.
        self._closed = True
        self._queue.put(_STOP)
        if self._thread.ident is None:
            # Never started: start it now, so that whatever was queued is still written.
            self._thread.start()
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        while True:
            group, stopping = self._take()
            if group:
                self._write(group)
            if stopping:
                return

    def _take(self) -> tuple[list[_Pending], bool]:
        """Block for one charge, then take whatever else is queued, up to `max_group`."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        group = [first]
        while len(group) < self._max_group:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return group, True
            group.append(item)
        return group, False

    def _write(self, group: list[_Pending]) -> None:
        try:
            new = set(self._ledger.record_committed([pending.charge for pending in group]))
        except Exception as exc:
            log.warning("cannot record %d charges", len(group), exc_info=True)
            _resolve(group, [exc] * len(group))
            return
        outcomes: list[bool | Exception] = []
        for pending in group:
            request_id = pending.charge.request_id
            # A request id twice in one group: only its first commit is new.
            outcomes.append(request_id in new)
            new.discard(request_id)
        _resolve(group, outcomes)


def _resolve(group: list[_Pending], outcomes: list[bool | Exception]) -> None:
    """Hand each caller its outcome, with one wake-up per event loop rather than per charge."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool], bool | Exception]]] = {}
    for pending, outcome in zip(group, outcomes, strict=True):
        by_loop.setdefault(pending.loop, []).append((pending.done, outcome))
    for loop, results in by_loop.items():
        try:
            loop.call_soon_threadsafe(_set_results, results)
        except RuntimeError:
            # The callers' loop is closed; their charges are recorded (or logged as failed).
            log.warning("%d charges: their event loop is gone", len(results))


def _set_results(results: list[tuple[asyncio.Future[bool], bool | Exception]]) -> None:
    for done, outcome in results:
        if done.done():
            continue
        if isinstance(outcome, Exception):
            done.set_exception(outcome)
        else:
            done.set_result(outcome)
