"""No reentrancy path into the vault: an asset whose transfers call back into it gets nowhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from tests.devnet import (
    batch_id,
    deploy_contract,
    operator_chain,
    send_unchecked,
    terms,
    user,
)
from tritonfleet.payments.chain.anvil import Anvil
from tritonfleet.payments.chain.client import TransactionRejected
from tritonfleet.payments.chain.contracts import CompiledContract, compile_source
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.money import Credit

DELAY_S = 60


@pytest.fixture(scope="module")
def hooked_token() -> CompiledContract:
    return compile_source(Path(__file__).parent / "contracts", "HookedToken")


@pytest.fixture
def world(anvil: Anvil, hooked_token: CompiledContract) -> tuple[DevChain, Contract]:
    """A vault over HookedToken, whose next transfer re-enters the vault once `arm` is called."""
    chain = operator_chain(anvil)
    token = deploy_contract(chain, hooked_token)
    chain.deploy(terms(chain, DELAY_S), asset=token.address)
    return chain, token


def funded(chain: DevChain, token: Contract, amount: int) -> LocalAccount:
    account = user(chain)
    chain.wait_confirmed(send_unchecked(chain, token.functions.mint(account.address, amount)))
    return account


def arm(chain: DevChain, token: Contract) -> None:
    chain.wait_confirmed(send_unchecked(chain, token.functions.set_reenter(chain.deployment.vault)))


def test_an_unarmed_hooked_token_deposits_normally(world: tuple[DevChain, Contract]) -> None:
    """Control: the same deposit with the hook off goes through, so the refusals below are the lock's."""
    chain, token = world
    alice = funded(chain, token, 10)
    chain.wait_confirmed(chain.deposit(alice, Credit(10)))
    assert chain.deposit_of(alice.address) == 10


def test_reentering_during_a_deposit_reverts(world: tuple[DevChain, Contract]) -> None:
    """A token that calls deposit from inside the vault's transferFrom makes the deposit revert."""
    chain, token = world
    alice = funded(chain, token, 10)
    arm(chain, token)
    with pytest.raises(TransactionRejected):
        chain.deposit(alice, Credit(10))
    assert chain.deposit_of(alice.address) == 0


def test_reentering_during_a_withdrawal_reverts(world: tuple[DevChain, Contract]) -> None:
    """A token that calls back from inside withdraw's transfer makes the withdrawal revert."""
    chain, token = world
    alice = funded(chain, token, 10)
    chain.wait_confirmed(chain.deposit(alice, Credit(10)))
    chain.wait_confirmed(chain.request_withdrawal(alice, Credit(10)))
    chain.increase_time(DELAY_S)
    arm(chain, token)
    with pytest.raises(TransactionRejected):
        chain.withdraw(alice)
    assert chain.deposit_of(alice.address) == 10


def test_reentering_during_a_settlement_reverts(world: tuple[DevChain, Contract]) -> None:
    """A token that calls back from inside settle's payment to the treasury makes settle revert."""
    chain, token = world
    alice = funded(chain, token, 10)
    chain.wait_confirmed(chain.deposit(alice, Credit(10)))
    arm(chain, token)
    with pytest.raises(TransactionRejected):
        chain.settle(batch_id(1), [alice.address], [Credit(4)])
    assert not chain.is_settled(batch_id(1)) and chain.deposit_of(alice.address) == 10
