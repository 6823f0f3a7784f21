"""The ledger's settlements against the vault's events: every way they disagree."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from tritonfleet.payments.chain.records import ChargedEvent, SettledEvent, ShortfallEvent
from tritonfleet.payments.ledger.records import Batch
from tritonfleet.payments.ledger.states import BatchState


def compare(
    batches: Iterable[Batch],
    settled: Iterable[SettledEvent],
    charged: Iterable[ChargedEvent],
    shortfalls: Iterable[ShortfallEvent],
) -> list[str]:
    """Every way the ledger and the chain disagree, one line each."""
    on_chain: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for charge in charged:
        on_chain[charge.batch_id][charge.account.lower()] += charge.amount
    settled_ids = {event.batch_id for event in settled}
    problems = []
    by_id = {batch.batch_id: batch for batch in batches}
    for batch_id, batch in sorted(by_id.items()):
        confirmed = batch.state is BatchState.CONFIRMED
        if confirmed != (batch_id in settled_ids):
            where = (
                "the chain has no settlement"
                if confirmed
                else f"the chain settled it, the ledger says {batch.state}"
            )
            problems.append(f"batch {batch_id}: {where}")
        elif confirmed:
            want = {account.lower(): amount for account, amount in batch.totals}
            got = dict(on_chain[batch_id])
            for account in sorted(want.keys() | got.keys()):
                if want.get(account, 0) != got.get(account, 0):
                    problems.append(
                        f"batch {batch_id}: account {account} charged {want.get(account, 0)} in the ledger, "
                        f"{got.get(account, 0)} on chain"
                    )
    for batch_id in sorted(settled_ids - by_id.keys()):
        problems.append(f"batch {batch_id}: settled on chain, unknown to the ledger")
    for short in shortfalls:
        problems.append(
            f"batch {short.batch_id}: account {short.account} owed {short.wanted}, "
            f"its deposit paid {short.taken} (shortfall {short.wanted - short.taken})"
        )
    return problems
