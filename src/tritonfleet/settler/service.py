"""The settler: committed charges → batches → one `settle` transaction each, exactly once.

    build batch (committed → batched)  →  send tx, record hash and nonce  →  wait for the
    receipt and confirmations  →  settled

Exactly once rests on two facts. The batch id is a hash of the batch's request ids, and the
vault settles a batch id at most once, so a resend can never pay twice. And before (re)sending
anything for a batch found unfinished after a crash, the settler asks the chain whether that
batch id is settled already: the chain, not the ledger row, is the authority.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tritonfleet.payments.chain.client import (
    MAX_BATCH_ACCOUNTS,
    NONCE_ATTEMPTS,
    BatchAlreadySettled,
    Chain,
    ChainUnavailable,
    NonceTaken,
    ReceiptTimeout,
    TransactionRejected,
    TransactionReverted,
)
from tritonfleet.payments.ledger.records import AccountAmount, Batch
from tritonfleet.payments.ledger.states import BatchState
from tritonfleet.payments.ledger.store import Ledger

log = logging.getLogger(__name__)

OnSettled = Callable[[Batch], None]


class Settler:
    """Settles what the ledger has committed, batch by batch, on one chain.

    `max_charges` = 1 is the original design's behaviour: one transaction per inference.
    """

    def __init__(
        self,
        ledger: Ledger,
        chain: Chain,
        max_charges: int,
        on_settled: OnSettled | None = None,
    ) -> None:
        self.ledger = ledger
        self.chain = chain
        self.max_charges = max_charges
        self.on_settled = on_settled

    def settle_pending(self) -> int:
        """Finish the batches a crash left, then batch and settle what is committed.

        Returns how many batches were confirmed. A chain that cannot be reached leaves the work
        for the next round: charges keep queueing in the ledger meanwhile.
        """
        confirmed = 0
        try:
            for unfinished in self.ledger.unfinished_batches():
                confirmed += self._finish(unfinished)
            while (batch := self.ledger.build_batch(self.max_charges, MAX_BATCH_ACCOUNTS)) is not None:
                confirmed += self._finish(batch)
                if batch.charge_count < self.max_charges and len(batch.totals) < MAX_BATCH_ACCOUNTS:
                    # Short of both bounds, it took all of the backlog; charges committed since
                    # wait for the next round, or under load every round would chase them in
                    # small batches.
                    break
        except ChainUnavailable as exc:
            log.warning("chain unreachable; settlement waits", extra={"error": str(exc)})
        except ReceiptTimeout as exc:
            log.warning("settlement not confirmed yet; resent next round", extra={"error": str(exc)})
        except TransactionRejected as exc:
            log.error("settlement rejected; tried again next round", extra={"error": str(exc)})
        return confirmed

    def _finish(self, batch: Batch) -> int:
        """Settle one batch, whatever state a crash left it in; 1 when it is confirmed.

        Only a batch recorded as sent can be settled already: a batch still building was never
        broadcast (`_send` records before it broadcasts), and should the chain know its id all
        the same, signing it fails its gas estimate and `_send` answers None.
        """
        if batch.state is BatchState.SENT and self.chain.is_settled(batch.batch_id):
            return self._confirmed(batch)
        if batch.state is BatchState.SENT and batch.tx_hash is not None:
            receipt = self.chain.receipt_of(batch.tx_hash)
            if receipt is not None and not receipt.succeeded:
                return self._failed(batch, f"transaction {batch.tx_hash} reverted")
        tx_hash = self._send(batch)
        if tx_hash is None:
            return self._confirmed(batch)
        try:
            self.chain.wait_confirmed(tx_hash)
        except TransactionReverted:
            if self.chain.is_settled(batch.batch_id):
                return self._confirmed(batch)
            return self._failed(batch, f"transaction {tx_hash} reverted")
        return self._confirmed(batch)

    def _send(self, batch: Batch) -> str | None:
        """Send, or resend at the recorded nonce outbidding the recorded transaction; the new
        transaction's hash, or None when the chain says the batch is settled already.

        The signed transaction's hash and nonce are recorded before it is broadcast: after a
        crash the ledger knows of everything that may be in flight.
        """
        accounts = [account for account, _ in batch.totals]
        amounts = [amount for _, amount in batch.totals]
        resend = batch.state is BatchState.SENT and batch.nonce is not None
        nonce, replaces = (batch.nonce, batch.tx_hash) if resend else (None, None)
        try:
            for attempt in range(1, NONCE_ATTEMPTS + 1):
                signed = self.chain.sign_settle(batch.batch_id, accounts, amounts, nonce, replaces)
                self.ledger.mark_sent(batch.batch_id, signed.tx_hash, signed.nonce)
                try:
                    self.chain.broadcast(signed)
                    break
                except NonceTaken:
                    # Another transaction from the operator's key (the dev faucet's, or a new
                    # one since the crash) holds the nonce: sign again with a fresh one.
                    if attempt == NONCE_ATTEMPTS:
                        raise
                    nonce, replaces = None, None
        except BatchAlreadySettled:
            return None
        log.info(
            "settlement sent",
            extra={
                "batch_id": batch.batch_id,
                "tx_hash": signed.tx_hash,
                "nonce": signed.nonce,
                "accounts": len(accounts),
            },
        )
        return signed.tx_hash

    def _confirmed(self, batch: Batch) -> int:
        totals: list[AccountAmount] = self.ledger.mark_confirmed(batch.batch_id)
        log.info("batch settled", extra={"batch_id": batch.batch_id, "accounts": len(totals)})
        if self.on_settled is not None:
            self.on_settled(self.ledger.batch(batch.batch_id))
        return 1

    def _failed(self, batch: Batch, why: str) -> int:
        log.error(
            "batch failed; its charges go back to committed", extra={"batch_id": batch.batch_id, "why": why}
        )
        self.ledger.mark_failed(batch.batch_id)
        return 0
