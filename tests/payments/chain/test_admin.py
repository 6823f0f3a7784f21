"""`python -m tritonfleet.payments.chain.admin`: the owner's changes from the command line, signed
with the operator's key of the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from tests.devnet import ADMIN_DELAY_S, operator_chain
from tritonfleet.payments.chain.admin import main
from tritonfleet.payments.chain.anvil import Anvil
from tritonfleet.payments.chain.deployment import Deployment
from tritonfleet.payments.chain.devchain import DevChain


@pytest.fixture
def config_file(chain: DevChain, tmp_path: Path) -> Path:
    chain.deployment.save(tmp_path / "deployment.json")
    path = tmp_path / "fleet.toml"
    path.write_text(
        f'[chain]\nrpc_url = "{chain.rpc_url}"\ndeployment_file = "{tmp_path / "deployment.json"}"\n'
    )
    return path


def test_a_treasury_change_is_proposed_shown_and_executed_after_the_time_lock(
    chain: DevChain, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = Account.create().address
    assert main(["--config", str(config_file), "propose-treasury", new]) == 0
    assert main(["--config", str(config_file), "status"]) == 0
    assert f"proposed       treasury {new}, executable from" in capsys.readouterr().out
    assert main(["--config", str(config_file), "execute-treasury"]) == 1
    assert "time lock not over" in capsys.readouterr().err
    chain.increase_time(ADMIN_DELAY_S)
    assert main(["--config", str(config_file), "execute-treasury"]) == 0
    assert chain.treasury() == new


def test_the_settler_is_revoked_at_once(chain: DevChain, config_file: Path) -> None:
    assert main(["--config", str(config_file), "set-settler", "0x" + "00" * 20]) == 0
    assert chain.vault_roles().settler == "0x" + "00" * 20


def test_a_value_where_none_is_taken_is_a_usage_error(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config_file), "cancel-owner", "0x1"]) == 2
    assert "takes no value" in capsys.readouterr().err


def test_deploy_writes_the_deployment_once(anvil: Anvil, tmp_path: Path) -> None:
    """deploy creates the contracts on the configured terms with the settler given, writes the
    deployment file, and refuses to replace it."""
    path, file = tmp_path / "fleet.toml", tmp_path / "deployment.json"
    path.write_text(
        f'[chain]\nrpc_url = "{anvil.rpc_url}"\ndeployment_file = "{file}"\nmax_batch_total = 77\n'
    )
    treasury, settler = Account.create().address, Account.create().address
    command = ["--config", str(path), "deploy", "--treasury", treasury, "--settler", settler]
    assert main(command) == 0
    chain = operator_chain(anvil)
    chain.use(Deployment.load(file))
    roles = chain.vault_roles()
    assert (roles.treasury, roles.settler, roles.max_batch_total) == (treasury, settler, 77)
    assert main(command) == 2, "never over a recorded deployment"
