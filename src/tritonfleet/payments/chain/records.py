"""Values of the chain: fees, receipts, balances, pending withdrawals and the vault's events.

Plain frozen dataclasses, so that the ledger and the reconcile tool never see web3's types.
Addresses are checksummed strings; hashes and batch ids 0x-prefixed hex, as the ledger keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from web3.types import EventData, TxReceipt

from tritonfleet.payments.money import Credit


@dataclass(frozen=True)
class Fees:
    """EIP-1559 fee caps of one transaction, in wei per gas."""

    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    def bumped(self) -> Fees:
        # Nodes accept a replacement only above the old fees: geth wants +10%, others +12.5%.
        return Fees(self.max_fee_per_gas * 9 // 8 + 1, self.max_priority_fee_per_gas * 9 // 8 + 1)

    def at_least(self, other: Fees) -> Fees:
        return Fees(
            max(self.max_fee_per_gas, other.max_fee_per_gas),
            max(self.max_priority_fee_per_gas, other.max_priority_fee_per_gas),
        )


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    block_number: int
    block_hash: str
    succeeded: bool
    gas_used: int
    effective_gas_price: int
    # Set for a contract creation.
    contract_address: str | None = None


@dataclass(frozen=True)
class PendingWithdrawal:
    amount: Credit
    # Unix time from which `withdraw` succeeds; 0 when nothing is pending.
    withdrawable_at: int


@dataclass(frozen=True)
class PendingChange:
    """A change of the vault proposed through its time lock: the new value (an address, or the
    new cap), executable from `ready_at` (Unix time) on."""

    value: str | int
    ready_at: int


@dataclass(frozen=True)
class VaultRoles:
    """Who holds which role of the vault, its limits, and the changes waiting out the time lock."""

    owner: str
    settler: str
    treasury: str
    max_batch_total: Credit
    admin_delay_s: int
    pending_treasury: PendingChange | None
    pending_owner: PendingChange | None
    pending_max_batch_total: PendingChange | None


@dataclass(frozen=True)
class ChainBalances:
    """Every asked account's deposit and pending withdrawal as of `block`, one snapshot; keyed by
    the accounts as the caller spelled them."""

    block: int
    deposits: dict[str, Credit]
    pending_withdrawals: dict[str, Credit]


@dataclass(frozen=True)
class VaultEvent:
    """One log of the vault, as emitted: the event's name and its arguments."""

    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class SettledEvent:
    batch_id: str
    total: Credit
    count: int
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class ChargedEvent:
    batch_id: str
    account: str
    amount: Credit
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class ShortfallEvent:
    batch_id: str
    account: str
    wanted: Credit
    taken: Credit
    block_number: int
    tx_hash: str


def settled(event: VaultEvent) -> SettledEvent:
    return SettledEvent(
        batch_id="0x" + event.args["batch_id"].hex(),
        total=Credit(event.args["total"]),
        count=event.args["count"],
        block_number=event.block_number,
        tx_hash=event.tx_hash,
    )


def charged(event: VaultEvent) -> ChargedEvent:
    return ChargedEvent(
        batch_id="0x" + event.args["batch_id"].hex(),
        account=event.args["account"],
        amount=Credit(event.args["amount"]),
        block_number=event.block_number,
        tx_hash=event.tx_hash,
    )


def shortfall(event: VaultEvent) -> ShortfallEvent:
    return ShortfallEvent(
        batch_id="0x" + event.args["batch_id"].hex(),
        account=event.args["account"],
        wanted=Credit(event.args["wanted"]),
        taken=Credit(event.args["taken"]),
        block_number=event.block_number,
        tx_hash=event.tx_hash,
    )


def receipt_from_web3(raw: TxReceipt) -> Receipt:
    return Receipt(
        tx_hash=raw["transactionHash"].to_0x_hex(),
        block_number=raw["blockNumber"],
        block_hash=raw["blockHash"].to_0x_hex(),
        succeeded=raw["status"] == 1,
        gas_used=raw["gasUsed"],
        effective_gas_price=raw["effectiveGasPrice"],
        contract_address=raw.get("contractAddress"),
    )


def vault_event_from_web3(log: EventData) -> VaultEvent:
    args = {key: bytes(value) if isinstance(value, bytes) else value for key, value in log["args"].items()}
    return VaultEvent(
        name=log["event"],
        args=args,
        block_number=log["blockNumber"],
        tx_hash=log["transactionHash"].to_0x_hex(),
        log_index=log["logIndex"],
    )
