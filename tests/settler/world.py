"""The settler tests' small world: charges, chains that misbehave on cue, top-ups."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.types import Nonce, TxParams, Wei

from tritonfleet.payments.chain.client import BatchId, SignedTx
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.ledger.records import NewCharge
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.money import Credit

_request_ids = itertools.count()


def charge(ledger: Ledger, account: str, *amounts: int) -> None:
    ledger.record_committed(
        [NewCharge(f"r{next(_request_ids)}", account, "simple", "1", Credit(a)) for a in amounts]
    )


def top_up(chain: DevChain, account: LocalAccount, amount: int) -> None:
    """More deposit for `account`, from the operator (the faucet's way)."""
    chain.wait_confirmed(chain.mint(chain.operator.address, Credit(amount)))
    chain.wait_confirmed(chain.deposit_for(account.address, Credit(amount)))


def take_settler_nonce(chain: DevChain) -> str:
    """Another sender with the settler's key (a second settler, say) sends a transaction: it
    takes the key's next nonce."""
    key = chain.settler
    tx: TxParams = {
        "from": key.address,
        "to": key.address,
        "value": Wei(0),
        "gas": 21_000,
        "maxFeePerGas": Wei(10 * chain.w3.eth.gas_price),
        "maxPriorityFeePerGas": chain.w3.eth.max_priority_fee,
        "nonce": Nonce(chain.next_nonce(key)),
        "chainId": chain.chain_id,
    }
    signed = key.sign_transaction(tx)  # type: ignore[arg-type]
    return chain.w3.eth.send_raw_transaction(signed.raw_transaction).to_0x_hex()


def like(chain: DevChain, kind: type[DevChain], receipt_timeout_s: float = 10.0) -> DevChain:
    """A chain of `kind` on the same node and contracts as `chain`."""
    other = kind(
        chain.rpc_url,
        chain.chain_id,
        chain.operator,
        receipt_timeout_s=receipt_timeout_s,
        poll_interval_s=0.02,
        settler=chain.settler,
    )
    other.use(chain.deployment)
    return other


class RefusesAccount(DevChain):
    """The real chain, but a settle paying `refused` is signed with an empty batch id, which the
    vault refuses ("vault: empty batch id"): the gas estimate fails, as for any settle that
    would revert."""

    refused: str = ""

    def _settle_fn(
        self, batch_id: BatchId, accounts: Sequence[str], amounts: Sequence[Credit]
    ) -> ContractFunction:
        if self.refused in accounts:
            batch_id = bytes(32)
        return super()._settle_fn(batch_id, accounts, amounts)


class RevertsOnChain(DevChain):
    """The real chain, but a settle paying `reverted` is signed with an empty batch id and a
    fixed gas limit, without a gas estimate: it is mined, and reverts on chain."""

    reverted: str = ""

    def sign_settle(
        self,
        batch_id: BatchId,
        accounts: Sequence[str],
        amounts: Sequence[Credit],
        nonce: int | None = None,
        replaces: str | None = None,
        max_fee_per_gas: int | None = None,
    ) -> SignedTx:
        if self.reverted not in accounts:
            return super().sign_settle(batch_id, accounts, amounts, nonce, replaces, max_fee_per_gas)
        fn = self._vault_c.functions.settle(
            bytes(32), [Web3.to_checksum_address(a) for a in accounts], list(amounts)
        )
        nonce = self.next_nonce(self.settler) if nonce is None else nonce
        tx = fn.build_transaction(
            {"from": self.settler.address, "gas": 500_000, "nonce": Nonce(nonce), "chainId": self.chain_id}
        )
        signed = self.settler.sign_transaction(tx)  # type: ignore[arg-type]
        return SignedTx(signed.hash.to_0x_hex(), nonce, bytes(signed.raw_transaction))
