"""Where the contracts live on one chain: written by the deployer, read by every service."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tritonfleet.config import ChainConfig, ConfigError
from tritonfleet.payments.money import Credit


@dataclass(frozen=True)
class VaultTerms:
    """What a new vault is deployed with; only the treasury and the settler change later, and
    the cap (see PaymentVault's roles)."""

    treasury: str
    # The one address that may settle: the settler's key, never the owner's.
    settler: str
    withdrawal_delay_s: int
    # The time lock of treasury, owner and cap-raise changes; at least withdrawal_delay_s.
    admin_delay_s: int
    # The most one settle may charge in all.
    max_batch_total: Credit

    @classmethod
    def of(cls, config: ChainConfig, treasury: str, settler: str) -> VaultTerms:
        return cls(
            treasury=treasury,
            settler=settler,
            withdrawal_delay_s=config.withdrawal_delay_s,
            admin_delay_s=config.admin_delay_s,
            max_batch_total=Credit(config.max_batch_total),
        )


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    # The vault's asset: FleetCredit, or the existing ERC-20 given at deployment.
    credit: str
    vault: str
    # Block of the first contract creation: where scans of the vault's events start.
    block: int
    withdrawal_delay_s: int

    def save(self, path: Path) -> None:
        # Written whole and renamed into place, so that a reader never sees half a file.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(self), fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Deployment:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"chain.deployment_file: cannot read {path}: {exc}") from exc
