"""The web3 wrapper: errors, confirmations, nonces, replacement, deployment files, gas."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from eth_account import Account
from eth_keys import KeyAPI
from eth_keys.backends import CoinCurveECCBackend
from hexbytes import HexBytes

from tests.devnet import batch_id, depositor, operator_chain
from tritonfleet.config import load_config
from tritonfleet.net import free_port
from tritonfleet.payments.chain.anvil import Anvil
from tritonfleet.payments.chain.client import (
    BatchAlreadySettled,
    Chain,
    ChainUnavailable,
    NotDeployed,
    ReceiptTimeout,
    WrongChain,
    connect,
)
from tritonfleet.payments.chain.deployment import Deployment
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.chain.keys import dev_account
from tritonfleet.payments.money import Credit


@contextmanager
def manual_mining(chain: DevChain) -> Iterator[None]:
    """Transactions wait in the pool until `mine`, as on a real chain."""
    chain.set_automine(False)
    try:
        yield
    finally:
        chain.set_automine(True)


def test_signatures_use_libsecp256k1() -> None:
    # eth-keys falls back to pure-Python curve arithmetic without coincurve, silently: each
    # settlement's signature then costs many times the CPU (pyproject.toml).
    assert isinstance(KeyAPI().backend, CoinCurveECCBackend)


def test_an_unreachable_endpoint_is_chain_unavailable() -> None:
    """With nothing listening, reads and sends raise ChainUnavailable (transient), not a rejection."""
    chain = Chain(f"http://127.0.0.1:{free_port()}", 31337, dev_account(0))
    with pytest.raises(ChainUnavailable):
        chain.block_number()
    chain.use(Deployment(31337, Account.create().address, Account.create().address, 0, 60))
    with pytest.raises(ChainUnavailable):
        chain.settle(batch_id(1), [Account.create().address], [Credit(1)])


def test_check_refuses_another_chain(chain: DevChain, anvil: Anvil) -> None:
    """check() raises WrongChain when the endpoint serves another chain id than configured."""
    other = Chain(anvil.rpc_url, 1, dev_account(0), deployment=chain.deployment)
    with pytest.raises(WrongChain, match="serves chain 31337, not 1"):
        other.check()


def test_check_refuses_addresses_without_code(anvil: Anvil) -> None:
    """check() raises NotDeployed when the deployment's addresses hold no contract."""
    ghost = Deployment(31337, Account.create().address, Account.create().address, 0, 60)
    chain = operator_chain(anvil)
    chain.use(ghost)
    with pytest.raises(NotDeployed, match="no contract at"):
        chain.check()


def test_contract_calls_need_a_deployment(anvil: Anvil) -> None:
    """Without a deployment, contract methods raise NotDeployed instead of calling address zero."""
    with pytest.raises(NotDeployed):
        operator_chain(anvil).deposit_of(Account.create().address)


def test_batch_ids_as_bytes_or_hex_agree(chain: DevChain) -> None:
    """A batch id given as 32 bytes or as the ledger's 0x-hex is the same batch."""
    payer = depositor(chain, 5)
    chain.wait_confirmed(chain.settle(bytes.fromhex(batch_id(3)[2:]), [payer.address], [Credit(1)]))
    assert chain.is_settled(batch_id(3)) and chain.is_settled(bytes.fromhex(batch_id(3)[2:]))
    with pytest.raises(ValueError, match="32 bytes"):
        chain.is_settled(b"short")


def test_wait_confirmed_waits_for_the_confirmations(chain: DevChain, anvil: Anvil) -> None:
    """With 2 confirmations a receipt counts only once one more block is mined; until then it times out."""
    deep = operator_chain(anvil, confirmations=2)
    deep.use(chain.deployment)
    tx_hash = deep.mint(Account.create().address, Credit(1))
    with pytest.raises(ReceiptTimeout):
        deep.wait_confirmed(tx_hash, timeout_s=0.2)
    chain.mine()
    assert deep.wait_confirmed(tx_hash).tx_hash == tx_hash


def test_next_nonce_counts_pending_transactions(chain: DevChain) -> None:
    """A sent but unmined transaction already takes the operator's nonce."""
    with manual_mining(chain):
        before = chain.next_nonce()
        chain.mint(Account.create().address, Credit(1))
        assert chain.next_nonce() == before + 1
        chain.mine()


def test_a_stuck_settlement_is_replaced_by_one_with_higher_fees(chain: DevChain) -> None:
    """Resent with the same nonce and `replaces`, the settlement outbids the first; one of them mines."""
    payer = depositor(chain, 50)
    with manual_mining(chain):
        nonce = chain.next_nonce(chain.settler)
        first = chain.settle(batch_id(9), [payer.address], [Credit(10)], nonce=nonce)
        # Unchanged fees make the very same transaction, which the pool already has.
        assert chain.settle(batch_id(9), [payer.address], [Credit(10)], nonce=nonce) == first
        old = chain.w3.eth.get_transaction(HexBytes(first))
        second = chain.settle(batch_id(9), [payer.address], [Credit(10)], nonce=nonce, replaces=first)
        new = chain.w3.eth.get_transaction(HexBytes(second))
        assert second != first and new["maxPriorityFeePerGas"] > old["maxPriorityFeePerGas"]
        chain.mine()
    assert chain.wait_confirmed(second).succeeded and chain.receipt_of(first) is None
    assert chain.is_settled(batch_id(9)) and chain.deposit_of(payer.address) == 40


def test_resending_a_settled_batch_says_so(chain: DevChain) -> None:
    """After a crash the settler may resend; a batch already on chain raises BatchAlreadySettled."""
    payer = depositor(chain, 50)
    nonce = chain.next_nonce(chain.settler)
    first = chain.settle(batch_id(4), [payer.address], [Credit(10)], nonce=nonce)
    chain.wait_confirmed(first)
    with pytest.raises(BatchAlreadySettled):
        chain.settle(batch_id(4), [payer.address], [Credit(10)], nonce=nonce, replaces=first)


def test_batching_costs_less_gas_per_charge(chain: DevChain) -> None:
    """Settling ten accounts in one batch costs less than a third of ten one-account settlements."""
    payers = [depositor(chain, 10).address for _ in range(10)]
    one = chain.estimate_settle_gas(batch_id(1), payers[:1], [Credit(1)])
    ten = chain.estimate_settle_gas(batch_id(1), payers, [Credit(1)] * 10)
    assert ten < 10 * one / 3


def test_connect_reads_the_config_and_the_deployment_file(
    chain: DevChain, anvil: Anvil, tmp_path: Path
) -> None:
    """connect() builds a Chain for the configured endpoint, with the deployment file's contracts."""
    chain.deployment.save(tmp_path / "deployment.json")
    overrides: dict[str, dict[str, object]] = {
        "chain": {
            "rpc_url": anvil.rpc_url,
            "deployment_file": str(tmp_path / "deployment.json"),
            "confirmations": 3,
        },
    }
    connected = connect(load_config(env={}, overrides=overrides))
    connected.check()
    assert connected.deployment == chain.deployment and connected.confirmations == 3
    assert connected.operator.address == dev_account(0).address


def test_deployment_file_round_trip(tmp_path: Path) -> None:
    """A saved deployment loads back equal."""
    deployment = Deployment(5, Account.create().address, Account.create().address, 17, 3600)
    deployment.save(tmp_path / "sub" / "deployment.json")
    assert Deployment.load(tmp_path / "sub" / "deployment.json") == deployment
