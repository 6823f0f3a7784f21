"""The development chain's own RPC methods, and the contracts deployed on it once.

Nothing here runs against a production endpoint: `DevChain` adds anvil-only methods (time
travel, mining, ether from nowhere) for tests and the dev faucet; `tritonfleet chain`
(`command.py`) runs anvil only when `chain.dev` is on.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tritonfleet.payments.chain.client import Chain, ChainError
from tritonfleet.payments.chain.deployment import Deployment, VaultTerms

log = logging.getLogger(__name__)


class DevChain(Chain):
    """A Chain on anvil, with anvil's development methods."""

    def increase_time(self, seconds: int) -> None:
        """Move the chain's clock forward and mine a block that carries the new time."""
        self._request("evm_increaseTime", [seconds])
        self.mine()

    def mine(self, blocks: int = 1) -> None:
        self._request("anvil_mine", [hex(blocks)])

    def set_automine(self, enabled: bool) -> None:
        """Off: transactions wait in the pool until `mine`, as on a real chain."""
        self._request("evm_setAutomine", [enabled])

    def set_balance(self, address: str, wei: int) -> None:
        self._request("anvil_setBalance", [address, hex(wei)])

    def latest_timestamp(self) -> int:
        block = self._request("eth_getBlockByNumber", ["latest", False])
        return int(block["timestamp"], 16)


def _is_current(chain: Chain, deployment: Deployment) -> bool:
    """Whether the vault is of this version: an older one lacks reads the services make, or the
    settle role, the cap and the time lock that the settler needs."""
    try:
        chain.balances([deployment.vault])
        chain.vault_roles()
    except ChainError:
        return False
    return True


def ensure_deployed(chain: Chain, deployment_file: Path, terms: VaultTerms) -> Deployment:
    """The deployment in `deployment_file` if its contracts are on this chain, else a new one."""
    if deployment_file.exists():
        deployment = Deployment.load(deployment_file)
        if deployment.chain_id == chain.chain_id and all(
            chain.has_code(address) for address in (deployment.credit, deployment.vault)
        ):
            chain.use(deployment)
            if _is_current(chain, deployment):
                return deployment
            log.info("the recorded contracts are of an older version; deploying")
        log.info("no contracts at the recorded addresses; deploying", extra={"file": str(deployment_file)})
    deployment = chain.deploy(terms)
    deployment.save(deployment_file)
    log.info(
        "contracts deployed",
        extra={"credit": deployment.credit, "vault": deployment.vault, "settler": terms.settler},
    )
    return deployment
