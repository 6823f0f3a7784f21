"""Contract wallets sign in by EIP-1271: the token manager asks the contract at the address,
on a real anvil, whether it accepts the signature. OwnedWallet accepts what its owner signs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from tests.devnet import CHAIN_ID, deploy_contract, operator_chain
from tests.token_manager.test_routes import bearer, fleet_config, nowhere_chain, served, sign
from tritonfleet.payments.chain.anvil import Anvil
from tritonfleet.payments.chain.client import Chain
from tritonfleet.payments.chain.contracts import CompiledContract, compile_source
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.ledger.database import sqlite_url
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.token_manager.command import create_app

CONTRACTS = Path(__file__).parents[1] / "payments" / "chain" / "contracts"


@pytest.fixture(scope="module")
def owned_wallet() -> CompiledContract:
    return compile_source(CONTRACTS, "OwnedWallet")


@pytest.fixture
def deployer(anvil: Anvil) -> DevChain:
    return operator_chain(anvil)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(sqlite_url(tmp_path / "ledger.db")) as opened:
        yield opened


@pytest.fixture
async def client(ledger: Ledger, anvil: Anvil) -> AsyncIterator[httpx.AsyncClient]:
    reader = Chain(anvil.rpc_url, CHAIN_ID, Account.create())
    async with served(create_app(fleet_config(), ledger=ledger, chain=reader)) as http:
        yield http


def wallet_of(owner: LocalAccount, deployer: DevChain, compiled: CompiledContract) -> Contract:
    return deploy_contract(deployer, compiled, owner.address)


async def sign_in_as(client: httpx.AsyncClient, address: str, signer: LocalAccount) -> httpx.Response:
    """Sign in for `address` with `signer`'s signature of the challenge."""
    answer = await client.post("/v1/auth/challenge", json={"address": address})
    assert answer.status_code == 200, answer.text
    message = answer.json()["message"]
    body = {"address": address, "message": message, "signature": sign(signer, message)}
    return await client.post("/v1/auth/verify", json=body)


async def test_a_contract_wallet_signs_in_with_its_owners_signature(
    client: httpx.AsyncClient, deployer: DevChain, owned_wallet: CompiledContract
) -> None:
    """The owner's signature is the wallet's (isValidSignature answers 0x1626ba7e), and the key
    issued is bound to the wallet's address, not the owner's."""
    owner = Account.create()
    wallet = wallet_of(owner, deployer, owned_wallet)
    issued = await sign_in_as(client, wallet.address, owner)
    assert issued.status_code == 200, issued.text
    assert issued.json()["account"] == wallet.address
    keys = await client.get("/v1/keys", headers=bearer(issued.json()["api_key"]))
    assert keys.json()["account"] == wallet.address


async def test_a_contract_wallet_refuses_another_signer(
    client: httpx.AsyncClient, deployer: DevChain, owned_wallet: CompiledContract
) -> None:
    """A stranger's signature is 401, while the same wallet takes its owner's: the refusal is
    the wallet's answer, not sign-in's refusing every contract."""
    owner, stranger = Account.create(), Account.create()
    wallet = wallet_of(owner, deployer, owned_wallet)
    refused = await sign_in_as(client, wallet.address, stranger)
    assert refused.status_code == 401
    assert refused.json() == {"error": "the signature was not made by this address"}
    assert (await sign_in_as(client, wallet.address, owner)).status_code == 200


async def test_a_contract_that_is_no_wallet_signs_nothing(
    client: httpx.AsyncClient, deployer: DevChain
) -> None:
    """A contract without isValidSignature reverts the call: a refusal, not an error. (A guard:
    sign-in before EIP-1271 refused it too.)"""
    token = deploy_contract(deployer, compile_source(CONTRACTS, "HookedToken"))
    refused = await sign_in_as(client, token.address, Account.create())
    assert refused.status_code == 401


async def test_while_the_chain_is_down_a_contract_wallet_is_told_to_retry(ledger: Ledger) -> None:
    """Without the chain, a signature by no key of the address's may still be a contract
    wallet's: 503, never a false "invalid signature". A key's own signature needs no chain."""
    async with served(create_app(fleet_config(), ledger=ledger, chain=nowhere_chain())) as client:
        user, stranger = Account.create(), Account.create()
        down = await sign_in_as(client, user.address, stranger)
        assert (await sign_in_as(client, user.address, user)).status_code == 200
    assert down.status_code == 503
    assert "unreachable, so whether a contract wallet signed is unknown" in down.json()["error"]
