"""`tritonfleet chain`: a local Ethereum node (anvil) with the contracts, for development.

It refuses to run unless `chain.dev` is on; its state is kept across restarts.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from tritonfleet.config import ConfigError, FleetConfig
from tritonfleet.payments.chain.anvil import Anvil, AnvilError
from tritonfleet.payments.chain.client import ChainError, redacted
from tritonfleet.payments.chain.deployment import Deployment, VaultTerms
from tritonfleet.payments.chain.devchain import DevChain, ensure_deployed
from tritonfleet.payments.chain.keys import operator_account, settler_account

log = logging.getLogger(__name__)

# A crash (SIGKILL) of anvil loses at most this much of the chain's history.
STATE_INTERVAL_S = 30
_WATCH_INTERVAL_S = 1.0


def serve(config: FleetConfig) -> int:
    """Run anvil with the contracts until SIGINT or SIGTERM, then stop it (which saves its state)."""
    settings = config.chain
    if not settings.dev:
        raise ConfigError("chain.dev is false: `tritonfleet chain` runs a development chain only")
    stopping = threading.Event()
    _on_signals(stopping)
    anvil = Anvil(
        settings.host,
        settings.port,
        settings.chain_id,
        settings.state_file,
        log_path=settings.state_file.parent / "anvil.log",
        state_interval_s=STATE_INTERVAL_S,
    )
    try:
        anvil.start()
        operator, settler = operator_account(settings), settler_account(config)
        chain = DevChain(
            anvil.rpc_url, settings.chain_id, operator, receipt_timeout_s=settings.receipt_timeout_s
        )
        # Treasury: the operator itself until the config grows a key for it.
        terms = VaultTerms.of(settings, treasury=operator.address, settler=settler.address)
        deployment = ensure_deployed(chain, settings.deployment_file, terms)
        _announce(config, anvil.rpc_url, deployment, operator.address, settler.address)
        while not stopping.wait(_WATCH_INTERVAL_S):
            if not anvil.alive():
                print(
                    f"tritonfleet chain: anvil exited; its log ends:\n{anvil.process.tail()}", file=sys.stderr
                )
                return 1
    except (AnvilError, ChainError) as exc:
        print(f"tritonfleet chain: {exc}", file=sys.stderr)
        return 1
    finally:
        # Graceful: anvil dumps its state on SIGTERM.
        anvil.stop()
    return 0


def _on_signals(stopping: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def _announce(config: FleetConfig, rpc_url: str, deployment: Deployment, operator: str, settler: str) -> None:
    if config.chain.rpc_url.rstrip("/") != rpc_url:
        log.warning(
            "chain.rpc_url is not this chain",
            extra={"rpc_url": redacted(config.chain.rpc_url), "serving": rpc_url},
        )
    print(
        f"chain {deployment.chain_id} at {rpc_url}\n"
        f"  FleetCredit   {deployment.credit}\n"
        f"  PaymentVault  {deployment.vault}\n"
        f"  operator      {operator}   (owner)\n"
        f"  settler       {settler}   (settle role)\n"
        f"  deployment    {config.chain.deployment_file}\n"
        f"  state         {config.chain.state_file}",
        flush=True,
    )
