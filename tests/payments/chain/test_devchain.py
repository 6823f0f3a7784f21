"""The contracts of the development chain: deployed once, kept while they are on the chain."""

from __future__ import annotations

from pathlib import Path

from eth_account import Account

from tests.devnet import deployed_chain, operator_chain
from tritonfleet.payments.chain.anvil import Anvil
from tritonfleet.payments.chain.deployment import Deployment
from tritonfleet.payments.chain.devchain import ensure_deployed


def test_ensure_deployed_redeploys_when_the_addresses_are_empty(anvil: Anvil, tmp_path: Path) -> None:
    """A deployment file whose addresses have no code on this chain (a reset chain) is replaced."""
    file = tmp_path / "deployment.json"
    Deployment(31337, Account.create().address, Account.create().address, 0, 60).save(file)
    chain = operator_chain(anvil)
    deployment = ensure_deployed(chain, file, 60, chain.operator.address)
    assert Deployment.load(file) == deployment and chain.has_code(deployment.vault)


def test_ensure_deployed_keeps_a_live_deployment(anvil: Anvil, tmp_path: Path) -> None:
    """A deployment file whose contracts are on this chain is used as it is."""
    live = deployed_chain(anvil).deployment
    live.save(tmp_path / "deployment.json")
    chain = operator_chain(anvil)
    assert ensure_deployed(chain, tmp_path / "deployment.json", 60, chain.operator.address) == live
    assert chain.deployment == live
