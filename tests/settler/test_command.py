"""The settler's commands on a real chain and ledger: `tritonfleet settler` signs with the settler's
key alone, which can settle and change nothing else; `tritonfleet reconcile` lists open debts,
exits 0 while the ledger and the chain agree, 1 once a batch failed for good."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from tests.devnet import depositor
from tests.settler.world import RefusesAccount, charge, like
from tritonfleet.config import FleetConfig, load_config
from tritonfleet.payments.chain.client import TransactionRejected, connect_settler
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.settler.command import reconcile
from tritonfleet.settler.service import BatchRefused, Settler


def config_for(chain: DevChain, ledger_url: str, tmp_path: Path) -> FleetConfig:
    deployment_file = tmp_path / "deployment.json"
    chain.deployment.save(deployment_file)
    empty = tmp_path / "fleet.toml"
    empty.touch()
    return load_config(
        empty,
        env={},
        overrides={
            "payments": {"ledger_url": ledger_url},
            "chain": {"rpc_url": chain.rpc_url, "deployment_file": str(deployment_file)},
        },
    )


def test_reconcile_lists_open_debts_and_fails_on_a_batch_failed_for_good(
    chain: DevChain, ledger_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = depositor(chain, 2), depositor(chain, 100)
    config = config_for(chain, ledger_url, tmp_path)
    with Ledger.open(ledger_url) as ledger:
        charge(ledger, alice.address, 5)
        Settler(ledger, chain, max_charges=1000).settle_pending()
        assert reconcile(config) == 0
        out = capsys.readouterr().out
        assert f"account {alice.address} owes 3" in out and "1 accounts in debt, 0 problems" in out

        refusing = like(chain, RefusesAccount)
        assert isinstance(refusing, RefusesAccount)
        refusing.refused = bob.address
        charge(ledger, bob.address, 1)
        with pytest.raises(BatchRefused):
            Settler(ledger, refusing, max_charges=1000, max_attempts=1).settle_pending()
    assert reconcile(config) == 1
    out = capsys.readouterr().out
    assert "failed for good after 1 attempts" in out and out.splitlines()[-1].startswith("MISMATCH")


def test_the_settler_key_settles_but_cannot_move_the_treasury_or_the_owner(
    chain: DevChain, ledger_url: str, tmp_path: Path
) -> None:
    alice, before = depositor(chain, 10), chain.vault_roles()
    settling = connect_settler(config_for(chain, ledger_url, tmp_path))
    assert settling.settler.address == before.settler != before.owner
    with Ledger.open(ledger_url) as ledger:
        charge(ledger, alice.address, 3)
        assert Settler(ledger, settling, max_charges=1000).settle_pending() == 1
    thief = Account.create().address
    for function, args in [
        ("propose_treasury", (thief,)),
        ("propose_owner", (thief,)),
        ("set_settler", (thief,)),
        ("propose_max_batch_total", (10**30,)),
    ]:
        with pytest.raises(TransactionRejected, match="caller is not the owner"):
            settling.administer(function, *args)
    assert chain.vault_roles() == before and chain.deposit_of(alice.address) == 7
