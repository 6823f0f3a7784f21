"""`tritonfleet chain`: anvil with the contracts, deployed once and kept across restarts."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

from tritonfleet.config import ConfigError, load_config
from tritonfleet.net import free_port
from tritonfleet.payments.chain.client import Chain
from tritonfleet.payments.chain.command import serve
from tritonfleet.payments.chain.deployment import Deployment
from tritonfleet.payments.chain.keys import dev_account
from tritonfleet.payments.money import Credit
from tritonfleet.processes import die_with_parent


class ChainCommand:
    """`python -m tritonfleet chain` on a free port, with its files in one folder."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.deployment_file = folder / "deployment.json"
        self.state_file = folder / "state.json"
        self.argv = [
            sys.executable,
            "-m",
            "tritonfleet",
            "chain",
            f"--port={self.port}",
            f"--rpc-url=http://127.0.0.1:{self.port}",
            f"--state-file={self.state_file}",
            f"--deployment-file={self.deployment_file}",
        ]


def start(command: ChainCommand) -> subprocess.Popen[str]:
    """Run the command until it has printed its addresses (it deployed, or found its contracts)."""
    proc = subprocess.Popen(command.argv, stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
    assert proc.stdout is not None
    first_line = proc.stdout.readline()
    assert first_line.startswith("chain 31337 at"), first_line
    return proc


def stop(proc: subprocess.Popen[str], signum: int) -> int:
    proc.send_signal(signum)
    with proc:  # closes the pipe
        return proc.wait(20)


def test_chain_command_deploys_once_and_keeps_state(tmp_path: Path) -> None:
    """The first run deploys and writes the deployment file; after SIGTERM the next run reuses both."""
    command = ChainCommand(tmp_path)
    proc = start(command)
    try:
        deployment = Deployment.load(command.deployment_file)
        chain = Chain(f"http://127.0.0.1:{command.port}", 31337, dev_account(0), deployment=deployment)
        # The settle role on another anvil account than the owner's, the cap from the config.
        roles = chain.vault_roles()
        assert (roles.owner, roles.settler) == (dev_account(0).address, dev_account(1).address)
        defaults = load_config(env={}).chain
        assert (roles.max_batch_total, roles.admin_delay_s) == (
            defaults.max_batch_total,
            defaults.admin_delay_s,
        )
        payer = Account.create().address
        chain.wait_confirmed(chain.mint(chain.operator.address, Credit(9)))
        chain.wait_confirmed(chain.deposit_for(payer, Credit(9)))
    finally:
        assert stop(proc, signal.SIGTERM) == 0
    written = command.deployment_file.stat().st_mtime_ns
    again = start(command)
    try:
        assert Deployment.load(command.deployment_file) == deployment
        assert command.deployment_file.stat().st_mtime_ns == written
        assert chain.deposit_of(payer) == 9
    finally:
        assert stop(again, signal.SIGINT) == 0


def test_the_chain_command_is_for_development_only() -> None:
    """With chain.dev off, `tritonfleet chain` refuses to start anything."""
    with pytest.raises(ConfigError, match="development chain only"):
        serve(load_config(env={}, overrides={"chain": {"dev": False}}))
