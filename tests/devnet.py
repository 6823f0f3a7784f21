"""A small world on a real anvil for the chain tests: the node, fresh contracts, funded users."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.types import Nonce

from tritonfleet.net import free_port
from tritonfleet.payments.chain.anvil import Anvil
from tritonfleet.payments.chain.contracts import CompiledContract
from tritonfleet.payments.chain.deployment import VaultTerms
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.chain.keys import DEV_OPERATOR_INDEX, DEV_SETTLER_INDEX, dev_account
from tritonfleet.payments.money import Credit

CHAIN_ID = 31337
DELAY_S = 3600
# The time lock of the vault's owner changes: longer than the withdrawal delay, as the vault asks.
ADMIN_DELAY_S = 2 * DELAY_S
MAX_BATCH_TOTAL = 10**15
ONE_ETHER = 10**18


def new_anvil(folder: Path, chain_id: int = CHAIN_ID) -> Anvil:
    return Anvil("127.0.0.1", free_port(), chain_id, folder / "state.json", folder / "anvil.log")


@contextmanager
def running_anvil(folder: Path) -> Iterator[Anvil]:
    anvil = new_anvil(folder)
    anvil.start()
    try:
        yield anvil
    finally:
        anvil.stop()


def operator_chain(
    anvil: Anvil,
    operator: LocalAccount | None = None,
    confirmations: int = 1,
    settler: LocalAccount | None = None,
) -> DevChain:
    """A chain signed by anvil's account 0 (the owner) and, for settlements, 1 (the settler),
    as `tritonfleet chain` deploys them."""
    return DevChain(
        anvil.rpc_url,
        anvil.chain_id,
        operator or dev_account(DEV_OPERATOR_INDEX),
        confirmations=confirmations,
        receipt_timeout_s=10.0,
        poll_interval_s=0.02,
        settler=settler or dev_account(DEV_SETTLER_INDEX),
    )


def terms(chain: DevChain, delay_s: int = DELAY_S, **changes: Any) -> VaultTerms:
    """The vault's terms of the tests: `chain`'s settler, a new treasury address, a cap that
    no test reaches unless it lowers it; `changes` replace any of them."""
    fixed = VaultTerms(
        treasury=Account.create().address,
        settler=chain.settler.address,
        withdrawal_delay_s=delay_s,
        admin_delay_s=max(delay_s, ADMIN_DELAY_S),
        max_batch_total=Credit(MAX_BATCH_TOTAL),
    )
    return dataclasses.replace(fixed, **changes)


def deployed_chain(anvil: Anvil, delay_s: int = DELAY_S, **changes: Any) -> DevChain:
    """Fresh contracts for one test, owned by anvil's first account, settled by its second;
    the treasury is a new address."""
    chain = operator_chain(anvil)
    chain.deploy(terms(chain, delay_s, **changes))
    return chain


def user(chain: DevChain, credit: int = 0, ether: int = ONE_ETHER) -> LocalAccount:
    """A new account with `ether` wei for gas and `credit` minted to it (not deposited)."""
    account: LocalAccount = Account.create()
    if ether:
        chain.set_balance(account.address, ether)
    if credit:
        chain.wait_confirmed(chain.mint(account.address, Credit(credit)))
    return account


def depositor(chain: DevChain, deposit: int) -> LocalAccount:
    """A new account holding `deposit` in the vault, funded by the operator (the faucet's way)."""
    account: LocalAccount = Account.create()
    chain.wait_confirmed(chain.mint(chain.operator.address, Credit(deposit)))
    chain.wait_confirmed(chain.deposit_for(account.address, Credit(deposit)))
    return account


def send_unchecked(
    chain: DevChain,
    fn: ContractFunction | ContractConstructor,
    gas: int = 1_000_000,
    sender: LocalAccount | None = None,
) -> str:
    """Sign and send (as the operator by default) with a fixed gas limit and no pre-flight
    estimate, so that a call that reverts is mined, and reverts on chain, instead of refused."""
    account = sender or chain.operator
    nonce = Nonce(chain.w3.eth.get_transaction_count(account.address, "pending"))
    tx = fn.build_transaction(
        {"from": account.address, "gas": gas, "nonce": nonce, "chainId": chain.chain_id}
    )
    signed = account.sign_transaction(tx)  # type: ignore[arg-type]
    return chain.w3.eth.send_raw_transaction(signed.raw_transaction).to_0x_hex()


def deploy_contract(chain: DevChain, compiled: CompiledContract, *args: object) -> Contract:
    """Deploy a contract that Chain does not know (a test's own), as the operator."""
    factory = chain.w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    receipt = chain.wait_confirmed(send_unchecked(chain, factory.constructor(*args)))
    assert receipt.contract_address is not None
    return chain.w3.eth.contract(address=Web3.to_checksum_address(receipt.contract_address), abi=compiled.abi)


def batch_id(n: int) -> str:
    return "0x" + n.to_bytes(32, "big").hex()
