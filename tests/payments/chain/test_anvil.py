"""The anvil wrapper: start, answer JSON-RPC, stop gracefully, keep state across restarts."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from tests.devnet import CHAIN_ID, deployed_chain, depositor, new_anvil, operator_chain
from tritonfleet.payments.chain.anvil import Anvil, AnvilStartError, find_anvil


def chain_id_of(anvil: Anvil) -> str:
    request = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    result: str = httpx.post(anvil.rpc_url, json=request).json()["result"]
    return result


def test_find_anvil_finds_an_executable() -> None:
    """The project's anvil (npm install by `make`) is found without any configured path."""
    binary = find_anvil()
    assert binary.is_file() and os.access(binary, os.X_OK)


def test_started_anvil_serves_the_chain_id(tmp_path: Path) -> None:
    """After start, anvil answers eth_chainId with the chain id it was given."""
    anvil = Anvil("127.0.0.1", new_anvil(tmp_path).port, 4242, None, tmp_path / "anvil.log")
    anvil.start()
    try:
        assert chain_id_of(anvil) == hex(4242)
    finally:
        anvil.stop()


def test_stop_is_graceful_and_dumps_the_state(tmp_path: Path) -> None:
    """SIGTERM makes anvil exit 0 after writing its state file, whose folder start created."""
    anvil = new_anvil(tmp_path / "deep" / "folder")
    anvil.process.log_path = tmp_path / "anvil.log"
    anvil.start()
    assert anvil.stop() == 0
    assert anvil.state_file is not None and anvil.state_file.stat().st_size > 0
    assert not anvil.alive()


def test_balances_and_contracts_survive_a_restart(tmp_path: Path) -> None:
    """Ether, contracts and deposits made before a stop are there after the next start."""
    anvil = new_anvil(tmp_path)
    anvil.start()
    try:
        chain = deployed_chain(anvil)
        payer = depositor(chain, 42)
        rich = Account.create().address
        chain.set_balance(rich, 123)
        head = chain.block_number()
    finally:
        anvil.stop()
    anvil.start()
    try:
        again = operator_chain(anvil)
        again.use(chain.deployment)
        again.check()
        assert (again.deposit_of(payer.address), again.eth_balance_of(rich)) == (42, 123)
        assert again.block_number() == head
        assert [e.amount for e in again.charged_events()] == []
        assert len(again.vault_events("Deposited")) == 1
    finally:
        anvil.stop()


def test_sigint_also_saves_the_state(tmp_path: Path) -> None:
    """An interrupt (Ctrl-C) dumps the state like SIGTERM does."""
    anvil = new_anvil(tmp_path)
    anvil.start()
    chain = operator_chain(anvil)
    rich = Account.create().address
    chain.set_balance(rich, 77)
    anvil.process.signal(signal.SIGINT)
    assert anvil.process.wait_or_kill(10) == 0
    anvil.start()
    try:
        assert operator_chain(anvil).eth_balance_of(rich) == 77
    finally:
        anvil.stop()


def test_a_busy_port_fails_the_start_with_the_log(tmp_path: Path) -> None:
    """anvil on a port already bound exits; start raises with the end of its log, leaving no process."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        anvil = Anvil("127.0.0.1", busy.getsockname()[1], CHAIN_ID, None, tmp_path / "anvil.log")
        with pytest.raises(AnvilStartError, match="exited early"):
            anvil.start(timeout_s=5)
    assert not anvil.alive()
