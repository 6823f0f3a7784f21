"""Where the contracts live on one chain: written by the deployer, read by every service."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tritonfleet.config import ConfigError


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
