"""Chain.balances: every account's deposit and pending withdrawal in one eth_call per
MAX_READ_ACCOUNTS, all at one block, read through a proxy that counts and slows the calls."""

from __future__ import annotations

import dataclasses
import math
import secrets
import threading
import time
from collections.abc import Callable

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractLogicError

from tests.devnet import ONE_ETHER, depositor
from tests.slow_rpc import SlowRpc, slow_rpc
from tritonfleet.payments.chain import contracts
from tritonfleet.payments.chain.client import (
    MAX_READ_ACCOUNTS,
    Chain,
    ChainError,
    ChainUnavailable,
    NotDeployed,
)
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.chain.records import ChainBalances
from tritonfleet.payments.money import Credit

# The fixture, imported for the tests below; listed so that ruff sees the import used.
__all__ = ["slow_rpc"]

ACCOUNTS = 10_000


def reader(rpc_url: str, chain: DevChain, request_timeout_s: float = 10.0) -> Chain:
    """The gateway's view of `chain`'s contracts: a key of its own, reading through `rpc_url`."""
    return Chain(
        rpc_url,
        chain.chain_id,
        Account.create(),
        deployment=chain.deployment,
        request_timeout_s=request_timeout_s,
    )


def strangers(count: int) -> list[str]:
    """Addresses that never touched the vault, lowercase as a database might keep them."""
    return ["0x" + secrets.token_hex(20) for _ in range(count)]


def eth_call_blocks(proxy: SlowRpc) -> set[str]:
    """The block parameters of the eth_calls that went through `proxy`."""
    return {request["params"][1] for request in proxy.requests if request["method"] == "eth_call"}


def test_ten_thousand_accounts_in_one_call_per_chunk_through_a_slow_node(
    chain: DevChain, slow_rpc: SlowRpc
) -> None:
    """10,000 accounts behind a node that takes 200 ms a call: one block number and
    ceil(10,000 / MAX_READ_ACCOUNTS) eth_calls, not two calls per account, with each account's
    values under the key it was asked by."""
    funded = {depositor(chain, deposit): deposit for deposit in (10, 20, 30, 40, 50)}
    leaving = next(iter(funded))
    chain.set_balance(leaving.address, ONE_ETHER)
    chain.wait_confirmed(chain.request_withdrawal(leaving, Credit(4)))
    # Spelled three ways: checksummed (the funded), lowercase, and uppercase hex.
    nobody = strangers(ACCOUNTS - len(funded))
    nobody[-1] = "0x" + nobody[-1][2:].upper()
    accounts = [*(a.address for a in funded), *nobody]
    slow_rpc.delay(0.2)

    balances = reader(slow_rpc.url, chain).balances(accounts)

    assert slow_rpc.count("eth_blockNumber") == 1
    assert slow_rpc.count("eth_call") == math.ceil(ACCOUNTS / MAX_READ_ACCOUNTS) == 10
    assert len(slow_rpc.requests) == 11
    assert eth_call_blocks(slow_rpc) == {hex(balances.block)}
    assert list(balances.deposits) == list(balances.pending_withdrawals) == accounts
    assert {a: d for a, d in balances.deposits.items() if d} == {a.address: d for a, d in funded.items()}
    assert {a: p for a, p in balances.pending_withdrawals.items() if p} == {leaving.address: 4}


def test_deposits_and_pending_withdrawals_match_the_single_reads(chain: DevChain, slow_rpc: SlowRpc) -> None:
    """For accounts with a deposit, a pending withdrawal or neither, balances says what
    deposit_of and pending_withdrawal_of say, in whatever case the address was written."""
    alice, bob = depositor(chain, 100), depositor(chain, 7)
    chain.set_balance(alice.address, ONE_ETHER)
    chain.wait_confirmed(chain.request_withdrawal(alice, Credit(60)))
    nobody = strangers(1)[0]
    accounts = [alice.address.lower(), bob.address, nobody]

    balances = reader(slow_rpc.url, chain).balances(accounts)

    assert balances.deposits == {alice.address.lower(): 100, bob.address: 7, nobody: 0}
    assert balances.pending_withdrawals == {alice.address.lower(): 60, bob.address: 0, nobody: 0}
    for account in accounts:
        assert balances.deposits[account] == chain.deposit_of(account)
        assert balances.pending_withdrawals[account] == chain.pending_withdrawal_of(account).amount
    assert slow_rpc.count("eth_call") == 1


def test_no_accounts_read_only_the_block(chain: DevChain, slow_rpc: SlowRpc) -> None:
    balances = reader(slow_rpc.url, chain).balances([])
    assert balances == ChainBalances(chain.block_number(), {}, {})
    assert slow_rpc.count("eth_call") == 0


def test_every_chunk_reads_the_block_of_the_snapshot(chain: DevChain, slow_rpc: SlowRpc) -> None:
    """A deposit mined while the read is under way, after its block number, is in none of its
    chunks: each eth_call is pinned to that block, not to the latest."""
    early, late = depositor(chain, 5), depositor(chain, 5)
    # The proxy holds the first chunk's eth_call until both deposits are mined: the node runs
    # every chunk after them, `early`'s in the first and `late`'s in the last.
    accounts = [early.address, *strangers(2 * MAX_READ_ACCOUNTS - 2), late.address]
    read = reader(slow_rpc.url, chain)
    slow_rpc.hang("eth_call")
    result: list[ChainBalances] = []
    reading = threading.Thread(target=lambda: result.append(read.balances(accounts)))
    reading.start()
    try:
        wait_until(lambda: slow_rpc.count("eth_call") == 1)
        for account in (early, late):
            chain.wait_confirmed(chain.mint(chain.operator.address, Credit(1)))
            chain.wait_confirmed(chain.deposit_for(account.address, Credit(1)))
    finally:
        slow_rpc.heal()
        reading.join(timeout=10)

    [snapshot] = result
    assert chain.block_number() > snapshot.block
    assert snapshot.deposits[early.address] == snapshot.deposits[late.address] == 5
    assert eth_call_blocks(slow_rpc) == {hex(snapshot.block)}
    now = read.balances([early.address, late.address])
    assert now.block > snapshot.block
    assert now.deposits == {early.address: 6, late.address: 6}


def test_an_rpc_error_raises_chain_error(chain: DevChain, slow_rpc: SlowRpc) -> None:
    """A node that answers eth_call, or the block number, with a JSON-RPC error: ChainError,
    and the next read once it answers again is whole."""
    read = reader(slow_rpc.url, chain)
    accounts = strangers(3 * MAX_READ_ACCOUNTS)
    for method in ("eth_call", "eth_blockNumber"):
        slow_rpc.fail(method, message=f"{method} is down")
        with pytest.raises(ChainError, match=f"{method} is down"):
            read.balances(accounts)
        slow_rpc.heal()
    assert len(read.balances(accounts).deposits) == len(accounts)


def test_a_node_that_never_answers_is_unavailable(chain: DevChain, slow_rpc: SlowRpc) -> None:
    """A hung eth_call ends in ChainUnavailable once the request timeout has run out on each of
    web3's own retries (it tries a read 5 times, backing off up to 1 s between tries)."""
    read = reader(slow_rpc.url, chain, request_timeout_s=0.2)
    slow_rpc.hang("eth_call")
    with pytest.raises(ChainUnavailable):
        read.balances(strangers(10))
    assert slow_rpc.count("eth_call") >= 1


def test_a_vault_without_balances_of_is_not_deployed(chain: DevChain) -> None:
    """An address with no code answers every eth_call with nothing: NotDeployed, not zeros."""
    elsewhere = dataclasses.replace(chain.deployment, vault=Account.create().address)
    read = Chain(chain.rpc_url, chain.chain_id, Account.create(), deployment=elsewhere)
    with pytest.raises(NotDeployed):
        read.balances(strangers(1))


def test_one_full_read_fits_a_nodes_eth_call_gas_cap(chain: DevChain) -> None:
    """MAX_READ_ACCOUNTS accounts never seen (every storage read cold, the costliest case) take
    a few million gas: far below the 30M-50M that nodes allow one eth_call. One more reverts."""
    vault = chain.w3.eth.contract(
        address=Web3.to_checksum_address(chain.deployment.vault), abi=contracts.load_contracts().vault.abi
    )
    addresses = [Web3.to_checksum_address(a) for a in strangers(MAX_READ_ACCOUNTS + 1)]
    assert vault.functions.balances_of(addresses[:-1]).estimate_gas() < 10_000_000
    with pytest.raises(ContractLogicError):
        vault.functions.balances_of(addresses).call()


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
