"""The gateway's paid path keeping its credit book in step with a real chain and ledger."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from eth_account import Account

from tests.devnet import depositor
from tritonfleet.config import PaymentsConfig
from tritonfleet.gateway.paid import PaidPath
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.ledger.database import sqlite_url
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.money import Credit
from tritonfleet.payments.signin import new_api_key


class CountingChain(DevChain):
    """The real chain, counting the deposit reads."""

    deposit_reads = 0

    def deposit_of(self, account: str) -> Credit:
        self.deposit_reads += 1
        return super().deposit_of(account)


@pytest.fixture
def counting(chain: DevChain) -> CountingChain:
    counting = CountingChain(chain.rpc_url, chain.chain_id, Account.create())
    counting.use(chain.deployment)
    return counting


@pytest.fixture
async def paid(counting: CountingChain, tmp_path: Path) -> AsyncIterator[PaidPath]:
    url = sqlite_url(tmp_path / "ledger.db")
    with Ledger.open(url) as ledger:
        path = PaidPath(PaymentsConfig(), url, ledger, counting, "Deposit credit.")
        yield path
        await path.writer.aclose()


async def test_deposits_are_read_again_only_after_a_new_block(
    chain: DevChain, counting: CountingChain, paid: PaidPath
) -> None:
    alice = depositor(chain, 70)
    key, key_hash = new_api_key()
    paid.ledger.add_api_key(key_hash, alice.address)

    await paid.refresh()
    assert paid.authenticate(f"Bearer {key}").account == alice.address
    assert paid.snapshot(alice.address).deposit == 70
    reads = counting.deposit_reads
    await paid.refresh()
    assert counting.deposit_reads == reads, "no block since: nothing on chain to read"

    chain.wait_confirmed(chain.mint(chain.operator.address, Credit(5)))
    chain.wait_confirmed(chain.deposit_for(alice.address, Credit(5)))
    await paid.refresh()
    assert counting.deposit_reads > reads
    assert paid.snapshot(alice.address).deposit == 75


async def test_a_new_key_holder_is_read_at_once_without_a_new_block(chain: DevChain, paid: PaidPath) -> None:
    await paid.refresh()
    bob = depositor(chain, 40)
    await paid.refresh()  # the block of bob's deposit, before bob has a key
    _, key_hash = new_api_key()
    paid.ledger.add_api_key(key_hash, bob.address)
    await paid.refresh()
    assert paid.snapshot(bob.address).deposit == 40
