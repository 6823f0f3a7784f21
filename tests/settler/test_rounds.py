"""The settler's rounds never stop it: a lagging or rate-limiting node, a ledger that blips, a bug
in a round are logged, counted and backed off, and a later round settles; the metrics show it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, make_url

from tests.devnet import depositor
from tests.fakes import FakeClock
from tests.settler.world import RefusesAccount, charge, like
from tests.slow_rpc import slow_rpc_proxy
from tritonfleet.config import SettlerConfig
from tritonfleet.net import free_port
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.chain.records import ChainBalances
from tritonfleet.payments.ledger.database import create_ledger_engine
from tritonfleet.payments.ledger.states import BatchState
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.settler.metrics import SettlerMetrics
from tritonfleet.settler.rounds import CHECK_S, Rounds
from tritonfleet.settler.service import Settler

SETTINGS = SettlerConfig(retry_base_s=0.5, retry_max_s=4.0, interval_s=10.0)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as opened:
        yield opened


def rounds_of(ledger: Ledger, chain: DevChain, **settler: Any) -> Rounds:
    return Rounds(
        Settler(ledger, chain, max_charges=1000, **settler), SETTINGS, SettlerMetrics(), FakeClock()
    )


def failures(rounds: Rounds, cause: str) -> float:
    return float(rounds.metrics.failures.labels(cause)._value.get())


@pytest.mark.parametrize(
    ("method", "code", "message"),
    [
        # A node behind a load balancer that has not seen the block asked for yet.
        ("eth_estimateGas", -32000, "header not found"),
        # A provider's rate limit, EIP-1474's "limit exceeded".
        ("eth_getTransactionReceipt", -32005, "request rate exceeded"),
        # Settled on chain, but its logs cannot be read yet: it is confirmed later, once.
        ("eth_getLogs", -32005, "request rate exceeded"),
    ],
)
def test_a_node_that_errs_on_a_read_delays_settlement_and_counts_no_refusal(
    chain: DevChain, ledger: Ledger, method: str, code: int, message: str
) -> None:
    alice = depositor(chain, 100)
    charge(ledger, alice.address, 3)
    with slow_rpc_proxy(chain.rpc_url) as proxy:
        through = DevChain(
            proxy.url,
            chain.chain_id,
            chain.operator,
            receipt_timeout_s=10,
            poll_interval_s=0.02,
            settler=chain.settler,
        )
        through.use(chain.deployment)
        rounds = rounds_of(ledger, through, max_attempts=1)
        proxy.fail(method, message, code)
        assert [rounds.tick(), rounds.tick()] == [0.5, 1.0], "backed off, doubling"
        assert proxy.count(method) >= 2 and failures(rounds, "chain") == 2
        assert all(batch.attempts == 0 for batch in ledger.unfinished_batches()), "a read error is no refusal"
        proxy.heal()
        assert rounds.tick() == CHECK_S
    assert chain.deposit_of(alice.address) == 97
    assert ledger.settlements()[0].state is BatchState.CONFIRMED
    assert len(chain.settled_events()) == 1


@contextmanager
def write_locked(url: str) -> Iterator[None]:
    """Another writer holds the SQLite file's write lock meanwhile."""
    holder = sqlite3.connect(make_url(url).database or "", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


def kill_connection_on(ledger_engine: Any, url: str, statement_start: str) -> None:
    """PostgreSQL terminates the ledger's connection (pg_terminate_backend, as in a failover or
    a restart) just before its first statement that starts so, mid-transaction."""
    admin_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    killed: list[int] = []

    def before(connection: Any, cursor: Any, statement: str, *_: Any) -> None:
        if killed or not statement.startswith(statement_start):
            return
        pid = connection.connection.dbapi_connection.info.backend_pid
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        killed.append(pid)

    event.listen(ledger_engine, "before_cursor_execute", before)


def test_a_ledger_blip_fails_a_round_and_a_later_one_settles(chain: DevChain, ledger_url: str) -> None:
    alice = depositor(chain, 100)
    Ledger.open(ledger_url).close()  # migrated
    engine = create_ledger_engine(ledger_url, timeout_s=0.2)
    with Ledger(engine) as ledger:
        charge(ledger, alice.address, 4)
        rounds = rounds_of(ledger, chain)
        if engine.dialect.name == "sqlite":
            with write_locked(ledger_url):
                assert rounds.tick() == 0.5, "the lock times out, the round fails"
        else:
            kill_connection_on(engine, ledger_url, "UPDATE batch SET state")
            assert rounds.tick() == 0.5, "the connection dies mid-transaction, the round fails"
        assert failures(rounds, "ledger") == 1
        assert rounds.tick() == CHECK_S
        assert chain.deposit_of(alice.address) == 96
        assert [batch.state for batch in ledger.settlements()] == [BatchState.CONFIRMED]
        assert len(chain.settled_events()) == 1, "settled once"


def test_a_bug_in_a_round_is_logged_with_its_traceback_and_the_next_round_runs(
    chain: DevChain, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    alice = depositor(chain, 100)

    class BuggyOnce(DevChain):
        bugs = 1

        def balances(self, accounts: Iterable[str]) -> ChainBalances:
            if self.bugs:
                self.bugs -= 1
                raise KeyError("a bug")
            return super().balances(accounts)

    # A debt makes the round read the deposits, which fails once.
    charge(ledger, alice.address, 1)
    batch = ledger.build_batch(10)
    assert batch is not None
    ledger.mark_confirmed(batch.batch_id, block=1, debts=[(alice.address, 1)])
    rounds = rounds_of(ledger, like(chain, BuggyOnce))
    assert rounds.tick() == 0.5
    assert failures(rounds, "unexpected") == 1
    assert any(record.exc_info for record in caplog.records), "with its traceback"
    assert rounds.tick() == CHECK_S
    assert ledger.unsettled_by_account() == {}


def test_a_round_is_due_every_interval_or_once_enough_charges_wait(chain: DevChain, ledger: Ledger) -> None:
    alice = depositor(chain, 100)
    clock = FakeClock()
    settings = SettlerConfig(interval_s=10.0, max_charges=3)
    rounds = Rounds(Settler(ledger, chain, max_charges=3), settings, SettlerMetrics(), clock)
    rounds.tick()  # the first round is due at once
    charge(ledger, alice.address, 1)
    rounds.tick()
    assert ledger.unsettled_by_account() == {alice.address: 1}, "not due yet"
    clock.advance(10)
    rounds.tick()
    assert ledger.unsettled_by_account() == {}
    charge(ledger, alice.address, 1, 1, 1)
    rounds.tick()
    assert ledger.unsettled_by_account() == {}, "enough charges wait"
    assert rounds.metrics.rounds._value.get() == 3


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_metrics_endpoint_shows_rounds_failures_batches_and_the_oldest_unsettled_charge(
    chain: DevChain, ledger_url: str
) -> None:
    alice, bob = depositor(chain, 100), depositor(chain, 100)
    refusing = like(chain, RefusesAccount)
    assert isinstance(refusing, RefusesAccount)
    refusing.refused = alice.address
    clock = FakeClock(now_s=1_700_000_000.0)
    with Ledger.open(ledger_url, clock=clock) as ledger:
        charge(ledger, alice.address, 2)
        clock.advance(30)
        rounds = Rounds(Settler(ledger, refusing, 1000, max_attempts=3), SETTINGS, SettlerMetrics(), clock)
        port = free_port()
        server = rounds.metrics.serve("127.0.0.1", port)
        assert server is not None
        try:
            rounds.tick()  # alice's batch refused once
            charge(ledger, bob.address, 1)
            rounds.tick()  # twice
            before = scrape(port)
            rounds.tick()  # refused for good: bob's settles next
            rounds.tick()
            after = scrape(port)
        finally:
            server.shutdown()
            server.server_close()
    assert before[("tritonfleet_settler_oldest_unsettled_charge_age_seconds", ())] == 30.0
    assert before[("tritonfleet_settler_batches", (("state", "building"),))] == 1
    assert after[("tritonfleet_settler_rounds_total", ())] == 4
    assert after[("tritonfleet_settler_failures_total", (("cause", "refused"),))] == 3
    assert after[("tritonfleet_settler_batches", (("state", "failed"),))] == 1
    assert after[("tritonfleet_settler_batches", (("state", "confirmed"),))] == 1
    assert after[("tritonfleet_settler_set_aside_charges", ())] == 1
    assert after[("tritonfleet_settler_oldest_unsettled_charge_age_seconds", ())] == 0.0
    assert chain.deposit_of(bob.address) == 99


def test_a_metrics_port_taken_leaves_the_settler_running_without_metrics(
    caplog: pytest.LogCaptureFixture,
) -> None:
    taken = SettlerMetrics().serve("127.0.0.1", free_port())
    assert taken is not None
    try:
        assert SettlerMetrics().serve("127.0.0.1", taken.server_port) is None
        assert "cannot serve the settler's metrics" in caplog.text
    finally:
        taken.shutdown()
        taken.server_close()
    assert SettlerMetrics().serve("127.0.0.1", 0) is None, "port 0: no metrics"
