"""A small world on a real anvil for the chain tests: the node, fresh contracts, funded users."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.types import Nonce

from tritonfleet.net import free_port
from tritonfleet.payments.chain.anvil import Anvil
from tritonfleet.payments.chain.contracts import CompiledContract
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.chain.keys import dev_account
from tritonfleet.payments.money import Credit

CHAIN_ID = 31337
DELAY_S = 3600
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


def operator_chain(anvil: Anvil, operator: LocalAccount | None = None, confirmations: int = 1) -> DevChain:
    return DevChain(
        anvil.rpc_url,
        anvil.chain_id,
        operator or dev_account(0),
        confirmations=confirmations,
        receipt_timeout_s=10.0,
        poll_interval_s=0.02,
    )


def deployed_chain(anvil: Anvil, delay_s: int = DELAY_S) -> DevChain:
    """Fresh contracts for one test, owned by anvil's first account; treasury is a new address."""
    chain = operator_chain(anvil)
    chain.deploy(delay_s, Account.create().address)
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
