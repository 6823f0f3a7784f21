"""`tritonfleet reconcile`: the ledger's settlements against the vault's events, every mismatch
listed; exit status 1 when there is any, so that it can run from cron or CI."""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable

from tritonfleet.config import FleetConfig
from tritonfleet.payments.chain import ChainError, connect
from tritonfleet.payments.database import default_ledger_url
from tritonfleet.payments.ledger import Ledger
from tritonfleet.payments.onchain import ChargedEvent, SettledEvent, ShortfallEvent
from tritonfleet.payments.records import Batch
from tritonfleet.payments.states import BatchState

# Far more batches than one ledger holds; reconcile reads them all.
ALL_BATCHES = 10**9


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


def serve(config: FleetConfig) -> int:
    with Ledger.open(default_ledger_url(config)) as ledger:
        batches = ledger.settlements(limit=ALL_BATCHES)
    chain = connect(config, signing=False)
    try:
        problems = compare(batches, chain.settled_events(), chain.charged_events(), chain.shortfall_events())
    except ChainError as exc:
        print(f"tritonfleet reconcile: cannot read the chain: {exc}", file=sys.stderr)
        return 2
    for line in problems:
        print(line)
    confirmed = [batch for batch in batches if batch.state is BatchState.CONFIRMED]
    total = sum(batch.amount for batch in confirmed)
    verdict = "MISMATCH" if problems else "ledger and chain agree"
    print(f"{verdict}: {len(confirmed)} settled batches, {total} credit settled, {len(problems)} problems")
    return 1 if problems else 0
