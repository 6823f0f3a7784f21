import threading

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, select, text

from tests.fakes import FakeClock
from tritonfleet.payments.errors import DuplicateApiKey, IllegalTransition, UnknownBatch
from tritonfleet.payments.ledger.database import SCRIPT_LOCATION, create_ledger_engine, write_transaction
from tritonfleet.payments.ledger.records import AccountTotals, NewCharge, batch_id_for
from tritonfleet.payments.ledger.schema import VERSION_TABLE, Base, ChargeRow
from tritonfleet.payments.ledger.states import BatchState, ChargeKind, ChargeState
from tritonfleet.payments.ledger.store import _CHARGE_COLUMNS, Ledger
from tritonfleet.payments.money import Credit

TX = "0x" + "ab" * 32


def charge(request_id: str, account: str = "alice", amount: int = 1) -> NewCharge:
    return NewCharge(request_id, account, "simple", "1", Credit(amount))


def alices(*request_ids: str) -> list[tuple[str, str]]:
    return [("alice", request_id) for request_id in request_ids]


def record_one_by_one(ledger: Ledger, clock: FakeClock, charges: list[NewCharge]) -> None:
    for each in charges:
        ledger.record_committed([each])
        clock.advance(1)


# Recording


def test_recording_a_request_id_again_changes_nothing(ledger: Ledger, clock: FakeClock) -> None:
    assert ledger.record_committed([charge("r1", amount=5)]) == [("alice", "r1")]
    clock.advance(10)
    assert ledger.record_committed([charge("r1", amount=7), charge("r2")]) == [("alice", "r2")]
    (first,) = [c for c in ledger.usage("alice") if c.request_id == "r1"]
    assert (first.amount, first.created_at_s) == (5, 1_700_000_000.0)
    assert ledger.totals("alice") == AccountTotals(committed=Credit(6))


def test_usage_can_be_read_per_api_key(ledger: Ledger) -> None:
    ledger.record_committed(
        [
            NewCharge("r1", "alice", "simple", "1", Credit(1), key_id="key-a"),
            NewCharge("r2", "alice", "simple", "1", Credit(2), key_id="key-b"),
        ]
    )
    assert [c.request_id for c in ledger.usage("alice", key_id="key-b")] == ["r2"]
    assert {c.key_id for c in ledger.usage("alice")} == {"key-a", "key-b"}


def test_a_request_id_twice_in_one_call_is_recorded_once(ledger: Ledger) -> None:
    assert ledger.record_committed([charge("r1", amount=2), charge("r1", amount=3)]) == [("alice", "r1")]
    assert [c.amount for c in ledger.usage("alice")] == [2]


def test_request_ids_are_unique_per_account_only(ledger: Ledger) -> None:
    # Request ids are the client's: another account choosing the same id must get its own
    # charge, not be refused as a replay of the victim's (nor block the victim's).
    assert ledger.record_committed([charge("r1", "mallory", 1)]) == [("mallory", "r1")]
    assert ledger.record_committed([charge("r1", "alice", 5), charge("r1", "bob", 7)]) == [
        ("alice", "r1"),
        ("bob", "r1"),
    ]
    assert ledger.record_committed([charge("r1", "alice", 9)]) == []
    assert ledger.unsettled_by_account() == {"alice": 5, "bob": 7, "mallory": 1}
    assert (ledger.charged("alice", "r1"), ledger.charged("alice", "r2"), ledger.charged("carol", "r1")) == (
        True,
        False,
        False,
    )


def test_a_charge_keeps_its_lease_and_is_an_inference(ledger: Ledger) -> None:
    ledger.record_committed([NewCharge("r1", "alice", "simple", "1", Credit(1), "key-a", "lease-1")])
    (recorded,) = ledger.usage("alice")
    assert (recorded.lease_id, recorded.kind, recorded.key_id) == ("lease-1", ChargeKind.INFERENCE, "key-a")


def test_the_charge_insert_names_every_column_of_the_table_but_its_kind() -> None:
    # The hot insert leaves `kind` to its server default: only settlements record debts.
    assert sorted(_CHARGE_COLUMNS) == sorted(set(ChargeRow.__table__.columns.keys()) - {"kind"})


def test_a_large_call_is_recorded_whole(ledger: Ledger) -> None:
    ids = ledger.record_committed([charge(f"r{i:04}") for i in range(2500)])
    assert len(ids) == 2500
    assert ledger.unsettled_by_account() == {"alice": 2500}


def test_a_charge_must_fit_a_bigint_and_not_be_negative() -> None:
    charge("ok", amount=2**63 - 1)
    for amount in (-1, 2**63):
        with pytest.raises(ValueError, match="outside"):
            charge("bad", amount=amount)


# Settlement


def test_unsettled_counts_committed_and_batched_but_not_settled(ledger: Ledger, clock: FakeClock) -> None:
    record_one_by_one(ledger, clock, [charge("r1", amount=1), charge("r2", amount=2), charge("b1", "bob", 4)])
    first = ledger.build_batch(max_charges=1)
    assert first is not None
    ledger.record_committed([charge("r3", amount=8)])
    assert ledger.unsettled_by_account() == {"alice": 11, "bob": 4}
    ledger.mark_confirmed(first.batch_id)
    assert ledger.unsettled_by_account() == {"alice": 10, "bob": 4}


def test_a_batch_takes_at_most_m_of_the_oldest_charges(ledger: Ledger, clock: FakeClock) -> None:
    record_one_by_one(ledger, clock, [charge(f"r{i}") for i in (5, 3, 9, 1, 7)])
    batch = ledger.build_batch(max_charges=3)
    assert batch is not None and batch.charge_count == 3
    assert batch.batch_id == batch_id_for(alices("r5", "r3", "r9"))
    rest = ledger.build_batch(max_charges=3)
    assert rest is not None and rest.batch_id == batch_id_for(alices("r1", "r7"))
    assert ledger.build_batch(max_charges=3) is None


def test_a_batch_stops_before_the_account_one_settlement_cannot_pay(ledger: Ledger, clock: FakeClock) -> None:
    accounts = ["alice", "bob", "alice", "carol", "bob", "dave"]
    record_one_by_one(ledger, clock, [charge(f"r{i}", a) for i, a in enumerate(accounts)])
    batch = ledger.build_batch(max_charges=10, max_accounts=2)
    assert batch is not None and batch.batch_id == batch_id_for(
        [("alice", "r0"), ("bob", "r1"), ("alice", "r2")]
    )
    rest = ledger.build_batch(max_charges=10, max_accounts=2)
    assert rest is not None and rest.batch_id == batch_id_for([("carol", "r3"), ("bob", "r4")])
    last = ledger.build_batch(max_charges=10, max_accounts=2)
    assert last is not None and last.totals == (("dave", 1),)


def test_a_batch_sums_its_charges_per_account(ledger: Ledger) -> None:
    ledger.record_committed([charge("a1", "alice", 2), charge("b1", "bob", 3), charge("a2", "alice", 5)])
    batch = ledger.build_batch(max_charges=10)
    assert batch is not None
    assert (batch.state, batch.tx_hash, batch.nonce) == (BatchState.BUILDING, None, None)
    assert batch.totals == (("alice", 7), ("bob", 3))
    assert ledger.batch_totals(batch.batch_id) == [("alice", 7), ("bob", 3)]
    assert batch.amount == 10


def test_the_batch_id_depends_only_on_the_set_of_charge_keys(
    ledger_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert batch_id_for(alices("b", "a", "c")) == batch_id_for(alices("c", "b", "a"))
    # Each part is length-prefixed: no two different sets hash the same input.
    assert batch_id_for(alices("ab", "c")) != batch_id_for(alices("a", "bc"))
    assert batch_id_for([("alice", "r1")]) != batch_id_for([("alic", "er1")])
    # The same request id of two accounts is two charges, and another batch than either's.
    both = batch_id_for([("alice", "r1"), ("bob", "r1")])
    assert len({both, batch_id_for([("alice", "r1")]), batch_id_for([("bob", "r1")])}) == 3
    assert len(batch_id_for(alices("a"))) == 66
    ids = []
    for url in (ledger_url, f"sqlite:///{tmp_path_factory.mktemp('other')}/ledger.db"):
        with Ledger.open(url) as ledger:
            ledger.record_committed([charge("x"), charge("y", "bob"), charge("z")])
            batch = ledger.build_batch(max_charges=10)
            assert batch is not None
            ids.append(batch.batch_id)
    assert ids[0] == ids[1] == batch_id_for([("alice", "x"), ("bob", "y"), ("alice", "z")])


def test_a_sent_then_confirmed_batch_settles_its_charges(ledger: Ledger) -> None:
    ledger.record_committed([charge("r1", amount=3), charge("r2", "bob", 4)])
    batch = ledger.build_batch(max_charges=10)
    assert batch is not None
    ledger.mark_sent(batch.batch_id, TX, nonce=7)
    assert ledger.mark_confirmed(batch.batch_id) == [("alice", 3), ("bob", 4)]
    assert ledger.batch(batch.batch_id).state is BatchState.CONFIRMED
    assert {c.state for c in ledger.usage("alice") + ledger.usage("bob")} == {ChargeState.SETTLED}
    assert ledger.unfinished_batches() == []


def test_a_resend_records_the_new_transaction(ledger: Ledger) -> None:
    ledger.record_committed([charge("r1")])
    batch = ledger.build_batch(max_charges=10)
    assert batch is not None
    ledger.mark_sent(batch.batch_id, TX, nonce=7)
    ledger.mark_sent(batch.batch_id, "0x" + "cd" * 32, nonce=8)
    again = ledger.batch(batch.batch_id)
    assert (again.state, again.tx_hash, again.nonce) == (BatchState.SENT, "0x" + "cd" * 32, 8)


def test_a_failed_batch_returns_its_charges_and_the_same_charges_reopen_it(ledger: Ledger) -> None:
    ledger.record_committed([charge("r1", amount=3), charge("r2", amount=4)])
    batch = ledger.build_batch(max_charges=10)
    assert batch is not None
    ledger.mark_sent(batch.batch_id, TX, nonce=7)
    ledger.mark_failed(batch.batch_id)
    assert {(c.state, c.batch_id) for c in ledger.usage("alice")} == {(ChargeState.COMMITTED, None)}
    assert ledger.totals("alice") == AccountTotals(committed=Credit(7))
    again = ledger.build_batch(max_charges=10)
    assert again is not None
    assert (again.batch_id, again.state, again.tx_hash, again.totals) == (
        batch.batch_id,
        BatchState.BUILDING,
        None,
        (("alice", 7),),
    )


def test_illegal_batch_moves_and_unknown_batches_raise(ledger: Ledger) -> None:
    ledger.record_committed([charge("r1")])
    batch = ledger.build_batch(max_charges=10)
    assert batch is not None
    ledger.mark_confirmed(batch.batch_id)
    with pytest.raises(IllegalTransition):
        ledger.mark_confirmed(batch.batch_id)
    with pytest.raises(IllegalTransition):
        ledger.mark_sent(batch.batch_id, TX, nonce=1)
    with pytest.raises(IllegalTransition):
        ledger.mark_failed(batch.batch_id)
    with pytest.raises(UnknownBatch):
        ledger.mark_sent("0x" + "00" * 32, TX, nonce=1)
    with pytest.raises(UnknownBatch):
        ledger.batch_totals("0x" + "00" * 32)
    assert {c.state for c in ledger.usage("alice")} == {ChargeState.SETTLED}


def test_a_restarted_ledger_finds_the_batch_built_and_the_batch_sent(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as before_crash:
        before_crash.record_committed([charge("r1", amount=2), charge("r2", amount=3), charge("r3", "bob")])
        sent = before_crash.build_batch(max_charges=2)
        built = before_crash.build_batch(max_charges=2)
        assert sent is not None and built is not None
        before_crash.mark_sent(sent.batch_id, TX, nonce=7)
    # The process died here: one batch sent but not confirmed, one built but never sent.
    with Ledger.open(ledger_url) as restarted:
        found = {b.batch_id: b for b in restarted.unfinished_batches()}
        assert set(found) == {sent.batch_id, built.batch_id}
        assert (found[sent.batch_id].state, found[sent.batch_id].tx_hash, found[sent.batch_id].nonce) == (
            BatchState.SENT,
            TX,
            7,
        )
        assert found[built.batch_id].state is BatchState.BUILDING
        assert found[sent.batch_id].totals == sent.totals
        # The chain says the sent one settled; the built one was never broadcast.
        restarted.mark_confirmed(sent.batch_id)
        restarted.mark_sent(built.batch_id, "0x" + "cd" * 32, nonce=8)
        restarted.mark_confirmed(built.batch_id)
        assert restarted.unfinished_batches() == []
        assert restarted.totals_by_account() == {
            "alice": AccountTotals(settled=Credit(5)),
            "bob": AccountTotals(settled=Credit(1)),
        }


def test_totals_agree_with_charges_through_every_state(ledger: Ledger, clock: FakeClock) -> None:
    amounts = {f"r{i:02}": (("alice", "bob", "carol")[i % 3], i + 1) for i in range(30)}
    record_one_by_one(
        ledger, clock, [charge(rid, account, amount) for rid, (account, amount) in amounts.items()]
    )
    confirmed, failed, open_ = (ledger.build_batch(max_charges=8) for _ in range(3))
    assert confirmed is not None and failed is not None and open_ is not None
    ledger.mark_confirmed(confirmed.batch_id)
    ledger.mark_failed(failed.batch_id)
    totals = ledger.totals_by_account()
    for account in ("alice", "bob", "carol"):
        expected = sum(amount for owner, amount in amounts.values() if owner == account)
        mine = totals[account]
        assert mine.committed + mine.batched + mine.settled == expected
        assert mine.settled == dict(confirmed.totals).get(account, 0)
        assert mine.batched == dict(open_.totals).get(account, 0)
        assert ledger.totals(account) == mine
        assert ledger.unsettled_by_account()[account] == mine.unsettled


def test_two_settlers_never_batch_the_same_charge(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as ledger:
        ledger.record_committed([charge(f"r{i:03}") for i in range(300)])
    batches: list[list[str]] = []
    lock = threading.Lock()

    def settle() -> None:
        with Ledger.open(ledger_url) as mine:
            while (batch := mine.build_batch(max_charges=7)) is not None:
                with lock:
                    batches.append(
                        [c.request_id for c in mine.usage("alice", 1000) if c.batch_id == batch.batch_id]
                    )

    threads = [threading.Thread(target=settle) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = [request_id for batch in batches for request_id in batch]
    assert sorted(taken) == [f"r{i:03}" for i in range(300)]


# Reads for the token manager


def test_usage_pages_newest_first_without_losing_ties(ledger: Ledger, clock: FakeClock) -> None:
    ledger.record_committed([charge("a"), charge("b"), charge("c")])
    clock.advance(1)
    ledger.record_committed([charge("d"), charge("e"), charge("x", "bob")])
    pages, before = [], None
    while page := ledger.usage("alice", limit=2, before=before):
        pages.append([c.request_id for c in page])
        before = page[-1].cursor
    assert pages == [["e", "d"], ["c", "b"], ["a"]]


def test_settlements_of_one_account_show_its_share_only(ledger: Ledger, clock: FakeClock) -> None:
    ledger.record_committed([charge("a1", "alice", 2), charge("b1", "bob", 3)])
    first = ledger.build_batch(max_charges=10)
    clock.advance(1)
    ledger.record_committed([charge("b2", "bob", 5)])
    second = ledger.build_batch(max_charges=10)
    assert first is not None and second is not None
    ledger.mark_sent(first.batch_id, TX, nonce=1)
    assert [b.batch_id for b in ledger.settlements()] == [second.batch_id, first.batch_id]
    (alices,) = ledger.settlements("alice")
    assert (alices.batch_id, alices.tx_hash, alices.totals, alices.charge_count) == (
        first.batch_id,
        TX,
        (("alice", 2),),
        1,
    )
    assert [b.amount for b in ledger.settlements("bob")] == [5, 3]


# API keys


def test_an_api_key_maps_to_its_account_until_revoked(ledger: Ledger) -> None:
    ledger.add_api_key("h1", "alice", "laptop")
    ledger.add_api_key("h2", "alice", "ci")
    ledger.add_api_key("h3", "bob", "")
    assert ledger.account_for_key("h1") == "alice"
    assert ledger.revoke_api_key("h1") is True
    assert ledger.revoke_api_key("h1") is False
    assert ledger.account_for_key("h1") is None
    assert ledger.account_for_key("nope") is None
    assert ledger.all_active_keys() == {"h2": "alice", "h3": "bob"}
    assert [(k.key_hash, k.active) for k in ledger.api_keys("alice")] == [("h1", False), ("h2", True)]


def test_an_api_key_hash_is_registered_once(ledger: Ledger) -> None:
    ledger.add_api_key("h1", "alice", "laptop")
    with pytest.raises(DuplicateApiKey):
        ledger.add_api_key("h1", "bob", "other")
    assert ledger.account_for_key("h1") == "alice"


# Migrations


def test_migrating_an_empty_database_gives_the_declared_schema(ledger_url: str) -> None:
    Ledger.open(ledger_url).close()
    engine = create_ledger_engine(ledger_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, Base.metadata) == []
            assert context.get_current_revision() == "0003"
    finally:
        engine.dispose()


def upgrade_to(engine: Engine, revision: str) -> None:
    """Migrate as `migrate` does, but only as far as `revision`."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    with write_transaction(engine) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_migrating_a_0002_ledger_keeps_its_charges_and_keys_them_per_account(ledger_url: str) -> None:
    engine = create_ledger_engine(ledger_url)
    try:
        upgrade_to(engine, "0002")
        with write_transaction(engine) as connection:
            connection.execute(
                text(
                    "INSERT INTO charge (request_id, account, model, version, amount, state,"
                    " created_at_s, updated_at_s, key_id) VALUES"
                    " ('r1', 'alice', 'simple', '1', 4, 'committed', 1.0, 1.0, 'key-a')"
                )
            )
    finally:
        engine.dispose()
    with Ledger.open(ledger_url) as migrated:
        (old,) = migrated.usage("alice")
        assert (old.request_id, old.amount, old.key_id, old.lease_id, old.kind) == (
            "r1",
            4,
            "key-a",
            None,
            ChargeKind.INFERENCE,
        )
        # Keyed per account now: bob may use alice's id, alice may not use it again.
        assert migrated.record_committed([charge("r1", "bob"), charge("r1", "alice")]) == [("bob", "r1")]
        assert migrated.unsettled_by_account() == {"alice": 4, "bob": 1}


def test_gateways_starting_together_all_open_one_migrated_ledger(ledger_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            Ledger.open(ledger_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_opening_a_migrated_ledger_again_keeps_its_data(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as first:
        first.record_committed([charge("r1", amount=4)])
    with Ledger.open(ledger_url) as second:
        assert second.unsettled_by_account() == {"alice": 4}
    engine = create_ledger_engine(ledger_url)
    try:
        with engine.connect() as connection:
            table = Base.metadata.tables["charge"]
            assert connection.scalar(select(table.c.amount)) == 4
    finally:
        engine.dispose()
