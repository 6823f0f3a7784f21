"""The gateway's paid path on a real chain (anvil) and a real SQLite ledger: keys, chain reads,
credit leases, prices, and the refusals that come before any node is asked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy import insert

from tests.devnet import depositor
from tests.fakes import FakeClock
from tests.slow_rpc import SlowRpc
from tritonfleet.config import PaymentsConfig
from tritonfleet.gateway.errors import AlreadyCharged, ApiKeyRefused, PaymentRequired, Unavailable
from tritonfleet.gateway.paid import PaidPath, Payer
from tritonfleet.payments.chain.client import Chain
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.ledger.database import create_ledger_engine, sqlite_url
from tritonfleet.payments.ledger.records import NewCharge
from tritonfleet.payments.ledger.schema import ApiKeyRow
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.money import Credit
from tritonfleet.payments.signin import hash_api_key, new_api_key

HINT = "Deposit credit."
FAST = PaymentsConfig(refresh_s=0.1, prices={"simple": 1, "versioned": 1, "versioned:3": 5})


@pytest.fixture
def ledger_file(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "ledger.db")


@pytest.fixture
def ledger(ledger_file: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_file) as opened:
        yield opened


@pytest.fixture
def slow_chain(chain: DevChain, slow_rpc: SlowRpc) -> Chain:
    """The test's contracts, read through the proxy; web3's own retries kept short."""
    reader = Chain(slow_rpc.url, chain.chain_id, Account.create(), request_timeout_s=0.5)
    reader.use(chain.deployment)
    return reader


async def started(
    config: PaymentsConfig, ledger_file: str, ledger: Ledger, chain: Chain, **kw: object
) -> PaidPath:
    paid = PaidPath(config, ledger_file, ledger, chain, HINT, **kw)  # type: ignore[arg-type]
    await paid.start()
    return paid


@pytest.fixture
async def paid(ledger_file: str, ledger: Ledger, chain: DevChain) -> AsyncIterator[PaidPath]:
    path = await started(FAST, ledger_file, ledger, chain)
    yield path
    await path.aclose()


async def key_for(paid: PaidPath, account: str) -> str:
    key, key_hash = new_api_key()
    paid.ledger.add_api_key(key_hash, account)
    await paid.refresh_keys()
    return key


async def until(done: object, what: str, timeout_s: float = 5.0) -> float:
    """Waits until `done()`; how long it took."""
    started_at = time.monotonic()
    while not done():  # type: ignore[operator]
        assert time.monotonic() - started_at < timeout_s, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)
    return time.monotonic() - started_at


async def funded_payer(paid: PaidPath, chain: DevChain, credit: int) -> Payer:
    """A new account with `credit` on chain and a key the paid path knows."""
    account = depositor(chain, credit)
    return paid.authenticate(f"Bearer {await key_for(paid, account.address)}")


class LedgerLock:
    """Another connection holding the SQLite ledger's write lock while taken: the ledger hangs."""

    def __init__(self, ledger_file: str) -> None:
        self.engine = create_ledger_engine(ledger_file)
        self.connection = self.engine.raw_connection()

    def take(self) -> None:
        self.connection.cursor().execute("BEGIN IMMEDIATE")

    def free(self) -> None:
        self.connection.rollback()


@pytest.fixture
def ledger_lock(ledger_file: str) -> Iterator[LedgerLock]:
    lock = LedgerLock(ledger_file)
    yield lock
    lock.connection.close()
    lock.engine.dispose()


def accepts(paid: PaidPath, key: str) -> bool:
    try:
        paid.authenticate(f"Bearer {key}")
    except ApiKeyRefused:
        return False
    return True


async def test_new_and_revoked_keys_take_effect_while_the_chain_hangs(
    ledger_file: str, ledger: Ledger, slow_chain: Chain, slow_rpc: SlowRpc
) -> None:
    paid = await started(FAST, ledger_file, ledger, slow_chain)
    try:
        slow_rpc.hang()
        await asyncio.sleep(0.3)  # the chain view's loop is now stuck in a read
        key, key_hash = new_api_key()
        ledger.add_api_key(key_hash, Account.create().address)
        assert await until(lambda: accepts(paid, key), "the new key is known", timeout_s=1.0) < 1.0
        ledger.revoke_api_key(key_hash)
        assert await until(lambda: not accepts(paid, key), "the key is revoked", timeout_s=1.0) < 1.0
    finally:
        slow_rpc.heal()
        await paid.aclose()


async def test_ten_thousand_accounts_are_read_in_one_call_per_thousand(
    ledger_file: str, ledger: Ledger, chain: DevChain, slow_chain: Chain, slow_rpc: SlowRpc
) -> None:
    alice = depositor(chain, 70)
    accounts = [alice.address, *(Account.create().address for _ in range(9_999))]
    engine = create_ledger_engine(ledger_file)
    with engine.begin() as connection:
        rows = [
            {"key_hash": hash_api_key(f"key-{n}"), "account": a, "label": "", "created_at_s": 0.0}
            for n, a in enumerate(accounts)
        ]
        connection.execute(insert(ApiKeyRow), rows)
    engine.dispose()
    slow_rpc.delay(0.2)
    paid = await started(PaymentsConfig(refresh_s=3600), ledger_file, ledger, slow_chain)
    try:
        assert slow_rpc.count("eth_call") == 10, "one call per thousand accounts, not two per account"
        assert paid.credit(alice.address)["deposit"] == 70
        assert paid.credit(accounts[-1])["deposit"] == 0
    finally:
        await paid.aclose()


async def test_a_request_without_a_version_pays_the_latest_versions_price(
    ledger_file: str, ledger: Ledger, chain: DevChain
) -> None:
    paid = await started(FAST, ledger_file, ledger, chain, latest_version=lambda model: "3")
    try:
        payer = await funded_payer(paid, chain, 20)
        async with paid.hold(payer, "unversioned", "versioned", None) as held:
            charged = await held.charge()
        assert charged.amount == 5, "version 3's price, not the model's default"
        (charge,) = ledger.usage(payer.account)
        assert (charge.version, charge.amount) == ("3", 5)
    finally:
        await paid.aclose()


async def test_a_request_id_the_client_chose_and_was_charged_is_refused_before_serving(
    chain: DevChain, paid: PaidPath
) -> None:
    payer = await funded_payer(paid, chain, 20)
    async with paid.hold(payer, "mine", "simple", None, from_client=True) as held:
        await held.charge()
    with pytest.raises(AlreadyCharged):
        async with paid.hold(payer, "mine", "simple", None, from_client=True):
            pytest.fail("a replayed id must not be held, nor served")
    assert paid.credit(payer.account)["reserved"] == 0, "the refusal held nothing"
    assert [charge.request_id for charge in paid.ledger.usage(payer.account)] == ["mine"]


async def test_a_revoked_key_is_refused_at_its_next_check(chain: DevChain, paid: PaidPath) -> None:
    alice = depositor(chain, 20)
    key = await key_for(paid, alice.address)
    payer: Payer = paid.authenticate(f"Bearer {key}")
    paid.check_key(payer)
    paid.ledger.revoke_api_key(hash_api_key(key))
    await paid.refresh_keys()
    with pytest.raises(ApiKeyRefused):
        paid.check_key(payer)


async def test_one_gateway_serves_exactly_the_deposit_through_its_leases(
    chain: DevChain, paid: PaidPath
) -> None:
    payer = await funded_payer(paid, chain, 45)

    async def one(n: int) -> bool:
        try:
            async with paid.hold(payer, f"r{n}", "simple", None) as held:
                await held.charge()
        except PaymentRequired:
            return False
        return True

    served = await asyncio.gather(*(one(n) for n in range(100)))
    assert served.count(True) == 45
    assert sum(charge.amount for charge in paid.ledger.usage(payer.account)) == 45
    with pytest.raises(PaymentRequired) as refused:
        async with paid.hold(payer, "one-more", "simple", None):
            pass
    assert refused.value.figures["available"] == 0 and refused.value.figures["missing"] == 1


async def test_new_paid_requests_get_503_while_charges_wait_for_the_ledger(
    ledger_file: str, ledger: Ledger, chain: DevChain, ledger_lock: LedgerLock
) -> None:
    config = FAST.model_copy(update={"max_pending_charges": 2, "ledger_timeout_s": 30.0})
    paid = await started(config, ledger_file, ledger, chain)
    try:
        payer = await funded_payer(paid, chain, 20)

        async def served(request_id: str) -> None:
            async with paid.hold(payer, request_id, "simple", None) as held:
                await held.charge()

        await served("warm-up")  # takes the lease while the ledger is free
        ledger_lock.take()
        waiting = [asyncio.create_task(served(f"r{n}")) for n in range(2)]
        await until(lambda: paid.writer.backlog == 2, "two charges wait for the ledger")
        with pytest.raises(Unavailable, match="waiting for the ledger"):
            async with paid.hold(payer, "refused", "simple", None):
                pytest.fail("nothing is served beyond the bound")
        ledger_lock.free()
        await asyncio.gather(*waiting)
        assert sorted(c.request_id for c in ledger.usage(payer.account)) == ["r0", "r1", "warm-up"]
    finally:
        await paid.aclose()


async def test_an_account_whose_charges_wait_too_long_for_settlement_is_not_served(
    ledger_file: str, chain: DevChain
) -> None:
    """A charge older than half the vault's withdrawal delay might not settle before the user
    withdraws: the gateway serves the account no more until the settler has caught up."""
    alice = depositor(chain, 20)
    clock = FakeClock(time.time() - chain.deployment.withdrawal_delay_s)
    with Ledger.open(ledger_file, clock) as old:
        old.record_committed([NewCharge("long-ago", alice.address, "simple", "1", Credit(1))])
    with Ledger.open(ledger_file) as ledger:
        paid = await started(FAST, ledger_file, ledger, chain)
        try:
            payer = paid.authenticate(f"Bearer {await key_for(paid, alice.address)}")
            with pytest.raises(Unavailable, match="waiting for settlement"):
                async with paid.hold(payer, "now", "simple", None):
                    pytest.fail("not served")
            assert ledger.leased(alice.address) == 0, "the lease taken is given back"
        finally:
            await paid.aclose()


async def test_a_settlement_newer_than_the_gateways_chain_view_frees_no_credit_twice(
    ledger_file: str, ledger: Ledger, chain: DevChain
) -> None:
    """The gateway's RPC is behind the settlement's block: its view still shows the deposit from
    before the batch took its due, so the batch's charges must count as unsettled still."""
    alice = depositor(chain, 10)
    key, key_hash = new_api_key()
    ledger.add_api_key(key_hash, alice.address)
    # No loop runs during the test: the chain view stays as of the start, before settlement.
    paid = await started(PaymentsConfig(refresh_s=3600), ledger_file, ledger, chain)
    try:
        payer = paid.authenticate(f"Bearer {key}")
        for n in range(10):
            async with paid.hold(payer, f"r{n}", "simple", None) as held:
                await held.charge()
        batch = ledger.build_batch(100)
        assert batch is not None
        accounts, amounts = zip(*batch.totals, strict=True)
        receipt = chain.wait_confirmed(chain.settle(batch.batch_id, list(accounts), list(amounts)))
        ledger.mark_confirmed(batch.batch_id, block=receipt.block_number)
        assert chain.deposit_of(alice.address) == 0 and paid.credit(alice.address)["deposit"] == 10
        with pytest.raises(PaymentRequired):
            async with paid.hold(payer, "free?", "simple", None):
                pytest.fail("the settled charges were counted as paid from a deposit that is gone")
    finally:
        await paid.aclose()


async def test_a_charge_the_ledger_does_not_confirm_in_time_answers_503_and_stays_held(
    ledger_file: str, ledger: Ledger, chain: DevChain, ledger_lock: LedgerLock
) -> None:
    config = FAST.model_copy(update={"charge_timeout_s": 0.3, "ledger_timeout_s": 30.0})
    paid = await started(config, ledger_file, ledger, chain)
    try:
        payer = await funded_payer(paid, chain, 20)
        async with paid.hold(payer, "warm-up", "simple", None) as held:
            await held.charge()
        ledger_lock.take()
        with pytest.raises(Unavailable, match="not confirmed in time"):
            async with paid.hold(payer, "slow", "simple", None) as held:
                await held.charge()
        credit = paid.credit
        assert credit(payer.account)["reserved"] == 1, "held while it may still be recorded"
        ledger_lock.free()
        await until(lambda: credit(payer.account)["reserved"] == 0, "the writer answers")
        assert credit(payer.account)["charged"] == 2, "recorded late, and counted"
        assert sorted(c.request_id for c in ledger.usage(payer.account)) == ["slow", "warm-up"]
    finally:
        await paid.aclose()


async def test_a_ledger_error_reaches_the_log_but_not_the_client(
    ledger_file: str,
    ledger: Ledger,
    chain: DevChain,
    ledger_lock: LedgerLock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database's own words may name its host, user or tables: the client is told to retry."""
    config = FAST.model_copy(update={"ledger_timeout_s": 0.2})
    paid = await started(config, ledger_file, ledger, chain)
    try:
        payer = await funded_payer(paid, chain, 20)
        async with paid.hold(payer, "warm-up", "simple", None) as held:
            await held.charge()
        ledger_lock.take()
        with pytest.raises(Unavailable) as refused:
            async with paid.hold(payer, "locked-out", "simple", None) as held:
                await held.charge()
        ledger_lock.free()
        assert str(refused.value) == "the charge could not be recorded, try again"
        logged = [getattr(record, "error", "") for record in caplog.records]
        assert any("database is locked" in error for error in logged)
    finally:
        await paid.aclose()
