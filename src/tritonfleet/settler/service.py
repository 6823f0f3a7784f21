"""The settler: committed charges → batches → one `settle` transaction each, exactly once.

    build batch (committed → batched)  →  send tx, record hash and nonce  →  wait for the
    receipt and confirmations  →  settled, with what short deposits left unpaid as debts

Exactly once rests on two facts. The batch id is a hash of the batch's charges, and the vault
settles a batch id at most once, so a resend can never pay twice. And before (re)sending
anything for a batch found unfinished after a crash, the settler asks the chain whether that
batch id is settled already: the chain, not the ledger row, is the authority.

A debt (what a short deposit could not pay) waits for a deposit to take it from. A batch that
the chain refuses (its settle would revert, or reverted) is tried again in later rounds,
`max_attempts` sends in all; then it fails for good, its charges set aside with it (unsettled,
listed by `reconcile`), so that it no longer holds up the batches after it.

No batch asks for more than the vault's cap per batch (`max_batch_total`, read each round): a
batch built over it goes back to committed before it is sent, and fewer of the same oldest
charges are batched instead; a charge over the cap by itself can never settle, and is set aside
at once. A cap of 0 is the owner's pause: nothing is sent while it lasts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NoReturn

from tritonfleet.payments.chain.client import (
    MAX_BATCH_ACCOUNTS,
    NONCE_ATTEMPTS,
    BatchAlreadySettled,
    Chain,
    ChainError,
    FeeAboveCeiling,
    NonceTaken,
    TransactionRejected,
    TransactionReverted,
)
from tritonfleet.payments.chain.records import ShortfallEvent
from tritonfleet.payments.ledger.records import AccountAmount, Batch
from tritonfleet.payments.ledger.states import BatchState
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.money import Credit

log = logging.getLogger(__name__)

OnSettled = Callable[[Batch], None]

DEFAULT_MAX_ATTEMPTS = 5


class BatchRefused(Exception):
    """The chain refused a batch's settlement; counted on the batch, which is tried again in a
    later round, or, at its last attempt, failed for good."""

    def __init__(self, batch_id: str, attempts: int, failed_for_good: bool, error: str) -> None:
        fate = "failed for good, its charges set aside" if failed_for_good else "tried again later"
        super().__init__(f"batch {batch_id} refused ({attempts} attempts), {fate}: {error}")
        self.batch_id = batch_id
        self.attempts = attempts
        self.failed_for_good = failed_for_good


class Settler:
    """Settles what the ledger has committed, batch by batch, on one chain.

    `max_charges` = 1 is the original design's behaviour: one transaction per inference.
    `max_fee_per_gas` (wei) is the most a settle transaction bids, fresh or as a replacement.
    """

    def __init__(
        self,
        ledger: Ledger,
        chain: Chain,
        max_charges: int,
        on_settled: OnSettled | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_fee_per_gas: int | None = None,
    ) -> None:
        self.ledger = ledger
        self.chain = chain
        self.max_charges = max_charges
        self.on_settled = on_settled
        self.max_attempts = max_attempts
        self.max_fee_per_gas = max_fee_per_gas
        # Whether the last round found the cap at 0: the pause is logged once, not every round.
        self._paused = False

    def settle_pending(self) -> int:
        """Finish the batches a crash or an earlier round left, then batch and settle what is
        committed. Returns how many batches were confirmed.

        Raises what stops the round: the chain or the ledger unreachable (`ChainError`, the
        database's errors), a batch refused (`BatchRefused`). The batches and charges stay as
        recorded, for the next round; `Rounds` logs, counts and backs off.
        """
        # Each round: the owner may lower it at any time.
        cap = self.chain.max_batch_total()
        if cap == 0:
            if not self._paused:
                log.warning("settlement paused: the vault's cap per batch is 0")
            self._paused = True
            return 0
        if self._paused:
            log.warning("settlement resumed: the vault's cap per batch is %d", cap)
        self._paused = False
        confirmed = 0
        for unfinished in self.ledger.unfinished_batches():
            if unfinished.state is BatchState.BUILDING and self._over_cap(unfinished, cap):
                # Built before the cap was lowered, never sent: its charges go to batches that fit.
                self._unbuild(unfinished)
            else:
                confirmed += self._finish(unfinished)
        while (built := self._next_batch(cap)) is not None:
            batch, bounded = built
            confirmed += self._finish(batch)
            if not bounded:
                # Short of every bound, it took all of the backlog; charges committed since
                # wait for the next round, or under load every round would chase them in
                # small batches.
                break
        return confirmed

    def _next_batch(self, cap: Credit) -> tuple[Batch, bool] | None:
        """The next batch of what is committed, at most `cap` in all, and whether a bound (the
        charges, the accounts or the cap) cut it short, so that more may wait.

        The debts of accounts whose deposit is empty stay out: settling those would take
        nothing, pay gas, and leave the same debt again. A batch over the cap goes back and
        fewer of its oldest charges are batched, in proportion to the cap: one or two tries
        for charges of like prices, a few more around one large charge.
        """
        broke: set[str] = set()
        if debtors := self.ledger.debtors():
            deposits = self.chain.balances(sorted(debtors)).deposits
            broke = {account for account in debtors if deposits[account] == 0}
        max_charges, cut = self.max_charges, False
        while (batch := self.ledger.build_batch(max_charges, MAX_BATCH_ACCOUNTS, broke)) is not None:
            if not self._over_cap(batch, cap):
                full = batch.charge_count >= self.max_charges or len(batch.totals) >= MAX_BATCH_ACCOUNTS
                return batch, cut or full
            if batch.charge_count == 1:
                self._set_aside(batch, f"its one charge of {batch.amount} is over the vault's cap of {cap}")
            else:
                self._unbuild(batch)
                max_charges = max(1, min(batch.charge_count - 1, batch.charge_count * cap // batch.amount))
            cut = True
        return None

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
                self._refused(batch, f"transaction {batch.tx_hash} reverted", nonce_spent=True)
        try:
            tx_hash = self._send(batch)
        except FeeAboveCeiling as exc:
            if batch.tx_hash is None:
                raise
            # The transaction sent before may still land: wait for it rather than overbid.
            log.warning(
                "fees above the ceiling: waiting for the transaction sent before",
                extra={"batch_id": batch.batch_id, "tx_hash": batch.tx_hash, "error": str(exc)},
            )
            tx_hash = batch.tx_hash
        except NonceTaken:
            raise  # a race with another sender, not a refusal of this batch
        except TransactionRejected as exc:
            self._refused(batch, str(exc), nonce_spent=False)
        if tx_hash is None:
            return self._confirmed(batch)
        try:
            self.chain.wait_confirmed(tx_hash)
        except TransactionReverted:
            if self.chain.is_settled(batch.batch_id):
                return self._confirmed(batch)
            self._refused(batch, f"transaction {tx_hash} reverted", nonce_spent=True)
        return self._confirmed(batch, tx_hash)

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
                signed = self.chain.sign_settle(
                    batch.batch_id, accounts, amounts, nonce, replaces, self.max_fee_per_gas
                )
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

    def _confirmed(self, batch: Batch, tx_hash: str | None = None) -> int:
        settled = self.chain.settlement_of(batch.batch_id, tx_hash or batch.tx_hash)
        if settled is None:
            # The vault says settled, but its logs do not show it yet (a node behind): the
            # block and any shortfall are needed, so the next round looks again.
            raise ChainError(f"batch {batch.batch_id} is settled, but no Settled log of it is found yet")
        debts = _debts(batch, settled.shortfalls)
        totals: list[AccountAmount] = self.ledger.mark_confirmed(batch.batch_id, settled.block_number, debts)
        log.info(
            "batch settled",
            extra={"batch_id": batch.batch_id, "accounts": len(totals), "block": settled.block_number},
        )
        for account, owed in debts:
            log.warning(
                "deposit short: the rest is a debt, taken from the next deposit",
                extra={"batch_id": batch.batch_id, "account": account, "debt": owed},
            )
        if self.on_settled is not None:
            self.on_settled(self.ledger.batch(batch.batch_id))
        return 1

    def _over_cap(self, batch: Batch, cap: Credit) -> bool:
        """Whether a batch not sent yet asks for more than `cap`. Not one the chain has settled,
        whatever it asks: unsent, it cannot be; but if it were, `_finish` confirms it, where
        batching its charges again would charge them twice."""
        return batch.amount > cap and not self.chain.is_settled(batch.batch_id)

    def _unbuild(self, batch: Batch) -> None:
        """Give the charges of a batch never sent back to committed, for smaller batches."""
        self.ledger.unbuild_batch(batch.batch_id)
        log.info(
            "batch over the vault's cap: batching fewer charges",
            extra={"batch_id": batch.batch_id, "amount": batch.amount, "charges": batch.charge_count},
        )

    def _set_aside(self, batch: Batch, error: str) -> None:
        """Fail a batch that no settle can take for good, at once: retrying cannot help."""
        self.ledger.record_refusal(batch.batch_id, error)
        self.ledger.mark_failed_for_good(batch.batch_id)
        log.error(
            "charge set aside: no batch can settle it",
            extra={"batch_id": batch.batch_id, "accounts": [a for a, _ in batch.totals], "error": error},
        )

    def _refused(self, batch: Batch, error: str, nonce_spent: bool) -> NoReturn:
        """Count the refusal on the batch, and raise BatchRefused.

        A reverted transaction spent its nonce: the charges go back to committed, and the same
        charges alone reopen this batch (and its count). A refusal before sending leaves the
        batch as it was, for the next round. At the last attempt it fails for good.
        """
        attempts = self.ledger.record_refusal(batch.batch_id, error)
        for_good = attempts >= self.max_attempts
        if for_good:
            self.ledger.mark_failed_for_good(batch.batch_id)
        elif nonce_spent:
            self.ledger.mark_failed(batch.batch_id)
        raise BatchRefused(batch.batch_id, attempts, for_good, error)


def _debts(batch: Batch, shortfalls: tuple[ShortfallEvent, ...]) -> list[AccountAmount]:
    """What each short account still owes, spelled as the ledger spells its account."""
    spelled = {account.lower(): account for account, _ in batch.totals}
    return [
        (spelled.get(short.account.lower(), short.account), Credit(short.wanted - short.taken))
        for short in shortfalls
        if short.wanted > short.taken
    ]
