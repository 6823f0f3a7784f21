"""The contracts of the development chain: deployed once, kept while they are on the chain."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from eth_account import Account

from tests.devnet import deploy_contract, deployed_chain, operator_chain, terms
from tritonfleet.payments.chain.anvil import Anvil
from tritonfleet.payments.chain.client import NotDeployed
from tritonfleet.payments.chain.contracts import compile_source
from tritonfleet.payments.chain.deployment import Deployment
from tritonfleet.payments.chain.devchain import ensure_deployed


def test_ensure_deployed_redeploys_when_the_addresses_are_empty(anvil: Anvil, tmp_path: Path) -> None:
    """A deployment file whose addresses have no code on this chain (a reset chain) is replaced."""
    file = tmp_path / "deployment.json"
    Deployment(31337, Account.create().address, Account.create().address, 0, 60).save(file)
    chain = operator_chain(anvil)
    deployment = ensure_deployed(chain, file, terms(chain, 60))
    assert Deployment.load(file) == deployment and chain.has_code(deployment.vault)


def test_ensure_deployed_keeps_a_live_deployment(anvil: Anvil, tmp_path: Path) -> None:
    """A deployment file whose contracts are on this chain is used as it is."""
    live = deployed_chain(anvil).deployment
    live.save(tmp_path / "deployment.json")
    chain = operator_chain(anvil)
    assert ensure_deployed(chain, tmp_path / "deployment.json", terms(chain, 60)) == live
    assert chain.deployment == live


def test_ensure_deployed_replaces_a_vault_without_the_settle_role(anvil: Anvil, tmp_path: Path) -> None:
    """A recorded vault of the version before the settle role, cap and time lock (its
    balances_of answers, its settler() reverts) is replaced by one with the settler given."""
    chain = deployed_chain(anvil)
    old = deploy_contract(chain, compile_source(Path(__file__).parent / "contracts", "VaultWithoutRoles"))
    file = tmp_path / "deployment.json"
    dataclasses.replace(chain.deployment, vault=old.address).save(file)
    chain.use(Deployment.load(file))
    with pytest.raises(NotDeployed, match="predates the settle role"):
        chain.max_batch_total()
    deployment = ensure_deployed(chain, file, terms(chain, 60))
    assert deployment.vault != old.address and Deployment.load(file) == deployment
    assert chain.vault_roles().settler == chain.settler.address
