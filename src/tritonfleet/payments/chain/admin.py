"""`python -m tritonfleet.payments.chain.admin ACTION [VALUE]`: deployment and the vault owner's changes.

Signed with the operator's key (`chain.keystore_file`, the vault's owner), from the same
configuration as the services (`--config`, `TRITONFLEET_*`). The settle role and a lower cap
take effect at once; the treasury, the owner and a higher cap are proposed, then executed once
the vault's time lock (`admin_delay`) has passed, or cancelled until then. A proposed owner
takes over by running `accept-owner` with its own key as the operator's.

    deploy --treasury ADDRESS --settler ADDRESS [--asset ADDRESS]
                                the contracts, on `chain.withdrawal_delay_s`, `chain.admin_delay_s`
                                and `chain.max_batch_total`, into `chain.deployment_file`
    status                      owner, settler, treasury, cap and what is pending
    set-settler ADDRESS         at once; 0x0000000000000000000000000000000000000000 revokes
    lower-cap AMOUNT            at once; 0 pauses settlement
    propose-treasury ADDRESS    execute-treasury   cancel-treasury
    propose-owner ADDRESS       accept-owner       cancel-owner
    propose-cap AMOUNT          execute-cap        cancel-cap
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tritonfleet.config import ConfigError, FleetConfig, load_config
from tritonfleet.payments.chain.client import Chain, ChainError, connect
from tritonfleet.payments.chain.deployment import VaultTerms
from tritonfleet.payments.chain.records import PendingChange

# action → (the vault's function, how its one value is read; None: it takes none)
ACTIONS: dict[str, tuple[str, Callable[[str], str | int] | None]] = {
    "set-settler": ("set_settler", str),
    "lower-cap": ("lower_max_batch_total", int),
    "propose-treasury": ("propose_treasury", str),
    "execute-treasury": ("execute_treasury", None),
    "cancel-treasury": ("cancel_treasury", None),
    "propose-owner": ("propose_owner", str),
    "cancel-owner": ("cancel_owner", None),
    "propose-cap": ("propose_max_batch_total", int),
    "execute-cap": ("execute_max_batch_total", None),
    "cancel-cap": ("cancel_max_batch_total", None),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritonfleet.payments.chain.admin", description=__doc__)
    parser.add_argument("--config", type=Path, default=None, help="TOML file (default: ./fleet.toml)")
    parser.add_argument("action", choices=["deploy", "status", "accept-owner", *ACTIONS])
    parser.add_argument("value", nargs="?", help="the address or amount the action takes")
    parser.add_argument("--treasury", help="deploy: where settlements pay")
    parser.add_argument("--settler", help="deploy: the settler's address (settler.keystore_file's)")
    parser.add_argument("--asset", help="deploy: an existing ERC-20 to hold instead of a new FleetCredit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        chain = connect(config)
        if args.action == "deploy":
            print(deploy(chain, config, args.treasury, args.settler, args.asset))
            return 0
        if args.action == "status":
            print(status(chain))
            return 0
        tx_hash = send(chain, args.action, args.value)
        receipt = chain.wait_confirmed(tx_hash)
    except (ConfigError, ChainError, ValueError) as exc:
        print(f"admin {args.action}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError | ValueError) else 1
    print(f"{args.action}: confirmed in block {receipt.block_number} ({tx_hash})")
    return 0


def deploy(
    chain: Chain, config: FleetConfig, treasury: str | None, settler: str | None, asset: str | None
) -> str:
    """Deploy on the configured terms and write the deployment file; what was deployed."""
    if treasury is None or settler is None:
        raise ValueError("deploy takes --treasury and --settler")
    file = config.chain.deployment_file
    if file.exists():
        # It is what every service reads: replacing it by accident strands every deposit.
        raise ValueError(f"{file} exists: the contracts are deployed (move it away to deploy again)")
    deployment = chain.deploy(VaultTerms.of(config.chain, treasury, settler), asset=asset)
    deployment.save(file)
    return f"vault {deployment.vault}, asset {deployment.credit}, written to {file}"


def send(chain: Chain, action: str, value: str | None) -> str:
    """Sign and send the action's transaction as the operator; its hash."""
    if action == "accept-owner":
        if value is not None:
            raise ValueError(f"{action} takes no value")
        return chain.accept_ownership(chain.operator)
    function, parse = ACTIONS[action]
    if parse is None:
        if value is not None:
            raise ValueError(f"{action} takes no value")
        return chain.administer(function)
    if value is None:
        raise ValueError(f"{action} takes an address or an amount")
    return chain.administer(function, parse(value))


def status(chain: Chain) -> str:
    roles = chain.vault_roles()
    lines = [
        f"vault          {chain.deployment.vault}",
        f"owner          {roles.owner}",
        f"settler        {roles.settler}",
        f"treasury       {roles.treasury}",
        f"cap per batch  {roles.max_batch_total}",
        f"time lock      {roles.admin_delay_s} s",
    ]
    pending = {
        "treasury": roles.pending_treasury,
        "owner": roles.pending_owner,
        "cap": roles.pending_max_batch_total,
    }
    lines += [_pending(what, change) for what, change in pending.items() if change is not None]
    return "\n".join(lines)


def _pending(what: str, change: PendingChange) -> str:
    ready = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(change.ready_at))
    return f"proposed       {what} {change.value}, executable from {ready}"


if __name__ == "__main__":
    sys.exit(main())
