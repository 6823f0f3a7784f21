"""FleetCredit and PaymentVault on a real EVM (anvil), and their compilation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3
from web3.contract.contract import ContractFunction

from tests.devnet import (
    DELAY_S,
    batch_id,
    depositor,
    operator_chain,
    send_unchecked,
    user,
)
from tritonfleet.payments.chain import contracts
from tritonfleet.payments.chain.anvil import Anvil
from tritonfleet.payments.chain.client import BatchAlreadySettled, TransactionRejected, TransactionReverted
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.chain.permit import Permit, sign_permit
from tritonfleet.payments.money import Credit


def stranger(chain: DevChain, anvil: Anvil) -> DevChain:
    """The same contracts, seen by an account that owns nothing and holds no role."""
    nobody = user(chain)
    other = operator_chain(anvil, operator=nobody, settler=nobody)
    other.use(chain.deployment)
    return other


# --- compilation -------------------------------------------------------------------------------


def test_unchanged_sources_are_read_from_the_cache(tmp_path: Path) -> None:
    """With an artifact stored under the sources' key, compile_contracts returns it, compiling nothing."""
    key = contracts.cache_key(contracts.paths.contracts_dir())
    stored = {name: {"abi": [], "bytecode": "0xfeed"} for name in (contracts.CREDIT, contracts.VAULT)}
    (tmp_path / f"{key}.json").write_text(json.dumps(stored))
    assert contracts.compile_contracts(contracts.paths.contracts_dir(), tmp_path).vault.bytecode == "0xfeed"


def test_the_project_contracts_compile() -> None:
    """Both contracts compile to creation bytecode with their ABI."""
    built = contracts.load_contracts()
    assert built.credit.bytecode.startswith("0x") and built.vault.bytecode.startswith("0x")
    names = {f.get("name") for f in built.vault.abi}
    assert {
        "settle",
        "is_settled",
        "deposit_with_permit",
        "balances_of",
        "settler",
        "max_batch_total",
    } <= names
    # Ownership moves through the time lock only, and is never given up.
    assert not {"transfer_ownership", "renounce_ownership", "set_treasury"} & names


def test_cache_key_follows_the_sources(tmp_path: Path) -> None:
    """Editing a contract source changes the cache key."""
    for name in ("FleetCredit.vy", "PaymentVault.vy"):
        (tmp_path / name).write_text((contracts.paths.contracts_dir() / name).read_text())
    before = contracts.cache_key(tmp_path)
    (tmp_path / "PaymentVault.vy").write_text((tmp_path / "PaymentVault.vy").read_text() + "\n# edit\n")
    assert contracts.cache_key(tmp_path) != before


# --- access control ----------------------------------------------------------------------------


def test_only_the_owner_mints(chain: DevChain, anvil: Anvil) -> None:
    """mint from another account reverts: only the operator creates credit."""
    with pytest.raises(TransactionRejected, match="access is denied"):
        stranger(chain, anvil).mint(Account.create().address, Credit(1))


# --- settlement --------------------------------------------------------------------------------


def test_settle_moves_charges_to_the_treasury(chain: DevChain) -> None:
    """settle takes each amount from its deposit and pays their sum to the treasury."""
    alice, bob = depositor(chain, 100), depositor(chain, 50)
    chain.wait_confirmed(chain.settle(batch_id(1), [alice.address, bob.address], [Credit(30), Credit(7)]))
    assert (chain.deposit_of(alice.address), chain.deposit_of(bob.address)) == (70, 43)
    assert chain.credit_balance_of(chain.treasury()) == 37
    assert chain.credit_balance_of(chain.deployment.vault) == 113


def test_settle_emits_settled_and_one_charged_per_account(chain: DevChain) -> None:
    """A batch of two logs Charged for each account and one Settled with total and count."""
    alice, bob = depositor(chain, 100), depositor(chain, 50)
    receipt = chain.wait_confirmed(
        chain.settle(batch_id(7), [alice.address, bob.address], [Credit(3), Credit(4)])
    )
    charged = [(e.batch_id, e.account, e.amount, e.tx_hash) for e in chain.charged_events()]
    assert charged == [
        (batch_id(7), alice.address, 3, receipt.tx_hash),
        (batch_id(7), bob.address, 4, receipt.tx_hash),
    ]
    (settled,) = chain.settled_events()
    assert (settled.batch_id, settled.total, settled.count, settled.block_number) == (
        batch_id(7),
        7,
        2,
        receipt.block_number,
    )


def test_a_batch_id_settles_once(chain: DevChain) -> None:
    """A second settle with the same batch id is refused, and is_settled says the batch is done."""
    payer = depositor(chain, 100)
    assert not chain.is_settled(batch_id(1))
    chain.wait_confirmed(chain.settle(batch_id(1), [payer.address], [Credit(10)]))
    assert chain.is_settled(batch_id(1))
    with pytest.raises(BatchAlreadySettled):
        chain.settle(batch_id(1), [payer.address], [Credit(10)])
    assert chain.deposit_of(payer.address) == 90


def test_a_repeated_batch_reverts_on_chain(chain: DevChain) -> None:
    """Sent anyway (no pre-flight estimate), a repeated batch id reverts in its block and moves nothing."""
    payer = depositor(chain, 100)
    chain.wait_confirmed(chain.settle(batch_id(1), [payer.address], [Credit(10)]))
    vault = chain.w3.eth.contract(address=Web3.to_checksum_address(chain.deployment.vault), abi=_vault_abi())
    tx_hash = send_unchecked(
        chain, vault.functions.settle(bytes.fromhex(batch_id(1)[2:]), [payer.address], [10])
    )
    with pytest.raises(TransactionReverted):
        chain.wait_confirmed(tx_hash)
    assert chain.deposit_of(payer.address) == 90


def test_settlement_above_a_deposit_takes_what_is_there(chain: DevChain) -> None:
    """A charge above the deposit takes the whole deposit, logs Shortfall, and the others still settle."""
    short, fine = depositor(chain, 5), depositor(chain, 100)
    chain.wait_confirmed(chain.settle(batch_id(1), [short.address, fine.address], [Credit(8), Credit(20)]))
    assert (chain.deposit_of(short.address), chain.deposit_of(fine.address)) == (0, 80)
    (gap,) = chain.shortfall_events()
    assert (gap.batch_id, gap.account, gap.wanted, gap.taken) == (batch_id(1), short.address, 8, 5)
    assert [e.amount for e in chain.charged_events()] == [5, 20]
    assert chain.settled_events()[0].total == 25


def test_settle_rejects_mismatched_lengths(chain: DevChain) -> None:
    """Accounts and amounts of different lengths are refused before anything is sent."""
    with pytest.raises(ValueError, match="2 accounts but 1 amounts"):
        chain.settle(batch_id(1), [Account.create().address, Account.create().address], [Credit(1)])


# --- deposits ----------------------------------------------------------------------------------


def test_approve_and_deposit(chain: DevChain) -> None:
    """A user's approve + deposit moves their credit into their deposit and logs Deposited."""
    alice = user(chain, credit=40)
    chain.wait_confirmed(chain.deposit(alice, Credit(25)))
    assert (chain.deposit_of(alice.address), chain.credit_balance_of(alice.address)) == (25, 15)
    (deposited,) = chain.vault_events("Deposited")
    assert deposited.args == {"account": alice.address, "payer": alice.address, "amount": 25}


def test_deposit_for_funds_someone_else(chain: DevChain) -> None:
    """deposit_for credits the named account from the caller's tokens, and says who paid."""
    alice = depositor(chain, 12)
    assert chain.deposit_of(alice.address) == 12
    (deposited,) = chain.vault_events("Deposited")
    assert deposited.args == {"account": alice.address, "payer": chain.operator.address, "amount": 12}


def test_deposit_with_a_relayed_permit(chain: DevChain) -> None:
    """A user without ether signs an EIP-2612 permit; the operator relays it and pays the gas."""
    alice = user(chain, credit=30, ether=0)
    permit = sign_permit(
        alice,
        chain.permit_domain(),
        chain.deployment.vault,
        Credit(30),
        chain.credit_nonce(alice.address),
        2**40,
    )
    chain.wait_confirmed(chain.deposit_with_permit(permit))
    assert chain.deposit_of(alice.address) == 30
    assert chain.credit_nonce(alice.address) == 1 and chain.eth_balance_of(alice.address) == 0


def test_a_front_run_permit_does_not_block_the_owners_deposit(chain: DevChain) -> None:
    """When someone submits the permit first, the owner's own deposit_with_permit still deposits."""
    alice = user(chain, credit=30)
    permit = sign_permit(alice, chain.permit_domain(), chain.deployment.vault, Credit(30), 0, 2**40)
    chain.wait_confirmed(send_unchecked(chain, _permit_call(chain, permit)))
    chain.wait_confirmed(chain.deposit_with_permit(permit, sender=alice))
    assert chain.deposit_of(alice.address) == 30


def test_a_relayer_needs_a_permit_that_works(chain: DevChain) -> None:
    """Relayed after a front-run, the deposit reverts rather than spend an allowance on its own say."""
    alice = user(chain, credit=30, ether=0)
    permit = sign_permit(alice, chain.permit_domain(), chain.deployment.vault, Credit(30), 0, 2**40)
    chain.wait_confirmed(send_unchecked(chain, _permit_call(chain, permit)))
    with pytest.raises(TransactionRejected, match="permit failed"):
        chain.deposit_with_permit(permit)


def test_a_forged_permit_moves_nothing(chain: DevChain) -> None:
    """A permit signed by someone else than the owner is refused, even when an allowance exists."""
    alice, mallory = user(chain, credit=30), Account.create()
    credit = chain.w3.eth.contract(
        address=Web3.to_checksum_address(chain.deployment.credit), abi=_credit_abi()
    )
    chain.wait_confirmed(
        send_unchecked(chain, credit.functions.approve(chain.deployment.vault, 30), sender=alice)
    )
    forged = sign_permit(mallory, chain.permit_domain(), chain.deployment.vault, Credit(30), 0, 2**40)
    forged = dataclasses.replace(forged, owner=alice.address)
    with pytest.raises(TransactionRejected, match="permit failed"):
        chain.deposit_with_permit(forged)
    assert chain.deposit_of(alice.address) == 0 and chain.credit_balance_of(alice.address) == 30


# --- withdrawals -------------------------------------------------------------------------------


def test_withdrawal_before_the_delay_reverts(chain: DevChain) -> None:
    """withdraw right after request_withdrawal is refused: the delay has not passed."""
    alice = user(chain, credit=50)
    chain.wait_confirmed(chain.deposit(alice, Credit(50)))
    chain.wait_confirmed(chain.request_withdrawal(alice, Credit(20)))
    with pytest.raises(TransactionRejected, match="withdrawal delay not over"):
        chain.withdraw(alice)
    assert chain.deposit_of(alice.address) == 50


def test_withdrawal_after_the_delay_pays_out(chain: DevChain) -> None:
    """After withdrawal_delay seconds withdraw returns the amount and clears the request."""
    alice = user(chain, credit=50)
    chain.wait_confirmed(chain.deposit(alice, Credit(50)))
    receipt = chain.wait_confirmed(chain.request_withdrawal(alice, Credit(20)))
    pending = chain.pending_withdrawal_of(alice.address)
    assert (
        pending.amount == 20 and pending.withdrawable_at == _timestamp(chain, receipt.block_number) + DELAY_S
    )
    chain.increase_time(DELAY_S)
    chain.wait_confirmed(chain.withdraw(alice))
    assert (chain.deposit_of(alice.address), chain.credit_balance_of(alice.address)) == (30, 20)
    assert chain.pending_withdrawal_of(alice.address).amount == 0
    requested, withdrawn = chain.vault_events("WithdrawalRequested"), chain.vault_events("Withdrawn")
    assert requested[0].args == {
        "account": alice.address,
        "amount": 20,
        "withdrawable_at": pending.withdrawable_at,
    }
    assert withdrawn[0].args == {"account": alice.address, "amount": 20}


def test_pending_withdrawals_still_settle(chain: DevChain) -> None:
    """Charges settled during the delay come out of a pending withdrawal, which pays the rest."""
    alice = user(chain, credit=100)
    chain.wait_confirmed(chain.deposit(alice, Credit(100)))
    chain.wait_confirmed(chain.request_withdrawal(alice, Credit(100)))
    chain.wait_confirmed(chain.settle(batch_id(1), [alice.address], [Credit(30)]))
    chain.increase_time(DELAY_S)
    chain.wait_confirmed(chain.withdraw(alice))
    assert (chain.deposit_of(alice.address), chain.credit_balance_of(alice.address)) == (0, 70)


def test_withdrawal_above_the_deposit_is_refused(chain: DevChain) -> None:
    """request_withdrawal of more than the deposit reverts."""
    alice = user(chain, credit=10)
    chain.wait_confirmed(chain.deposit(alice, Credit(10)))
    with pytest.raises(TransactionRejected, match="amount exceeds deposit"):
        chain.request_withdrawal(alice, Credit(11))


def test_withdraw_without_a_request_is_refused(chain: DevChain) -> None:
    """withdraw with nothing pending reverts, even long after a deposit."""
    alice = user(chain, credit=10)
    chain.wait_confirmed(chain.deposit(alice, Credit(10)))
    chain.increase_time(DELAY_S)
    with pytest.raises(TransactionRejected, match="no pending withdrawal"):
        chain.withdraw(alice)


# --- helpers -----------------------------------------------------------------------------------


def _vault_abi() -> list[dict[str, object]]:
    return contracts.load_contracts().vault.abi


def _credit_abi() -> list[dict[str, object]]:
    return contracts.load_contracts().credit.abi


def _permit_call(chain: DevChain, permit: Permit) -> ContractFunction:
    """The token's own permit(...) call, as a front-runner who saw the signature would send it."""
    credit = chain.w3.eth.contract(
        address=Web3.to_checksum_address(chain.deployment.credit), abi=_credit_abi()
    )
    return credit.functions.permit(
        permit.owner, permit.spender, permit.amount, permit.deadline, permit.v, permit.r, permit.s
    )


def _timestamp(chain: DevChain, block_number: int) -> int:
    return int(chain.w3.eth.get_block(block_number)["timestamp"])
