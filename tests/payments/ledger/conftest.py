"""A ledger on each kind of database (the `ledger_url` fixture), with a clock the test moves."""

from collections.abc import Iterator

import pytest

from tests.fakes import FakeClock
from tritonfleet.payments.ledger.store import Ledger


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(now_s=1_700_000_000.0)


@pytest.fixture
def ledger(ledger_url: str, clock: FakeClock) -> Iterator[Ledger]:
    with Ledger.open(ledger_url, clock=clock) as opened:
        yield opened
