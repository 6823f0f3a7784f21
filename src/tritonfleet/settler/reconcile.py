"""The ledger's settlements against the vault's events: every way they disagree; and the debts.

A short deposit is no disagreement once the ledger has it as a debt: the vault took what the
deposit held, and the rest is a charge of the account's that a later batch settles. So a
confirmed batch agrees with the chain when, per account, its ledger total less the debt it left
is what the vault took; a shortfall that the ledger has not recorded as that debt is a problem.
A batch failed for good is one too: its charges wait, unsettled, for an operator.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from tritonfleet.payments.chain.records import ChargedEvent, SettledEvent, ShortfallEvent
from tritonfleet.payments.ledger.records import AccountAmount, AccountTotals, Batch
from tritonfleet.payments.ledger.states import BatchState


def compare(
    batches: Iterable[Batch],
    settled: Iterable[SettledEvent],
    charged: Iterable[ChargedEvent],
    shortfalls: Iterable[ShortfallEvent],
) -> list[str]:
    """Every way the ledger and the chain disagree, and every batch failed for good; one line each."""
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
            want, owed = _by_account(batch.totals), _by_account(batch.debts)
            got = dict(on_chain[batch_id])
            for account in sorted(want.keys() | got.keys()):
                wanted, debt = want.get(account, 0), owed.get(account, 0)
                if wanted - debt != got.get(account, 0):
                    left = f" ({debt} of it left as debt)" if debt else ""
                    problems.append(
                        f"batch {batch_id}: account {account} charged {wanted} in the ledger{left}, "
                        f"{got.get(account, 0)} on chain"
                    )
        if batch.set_aside:
            problems.append(
                f"batch {batch_id}: failed for good after {batch.attempts} attempts; its "
                f"{batch.charge_count} charges ({batch.amount} credit) wait unsettled; "
                f"last error: {batch.last_error}"
            )
    for batch_id in sorted(settled_ids - by_id.keys()):
        problems.append(f"batch {batch_id}: settled on chain, unknown to the ledger")
    for short in shortfalls:
        known = by_id.get(short.batch_id)
        recorded = _by_account(known.debts).get(short.account.lower(), 0) if known else 0
        if recorded != short.wanted - short.taken:
            problems.append(
                f"batch {short.batch_id}: account {short.account} owed {short.wanted}, "
                f"its deposit paid {short.taken} (shortfall {short.wanted - short.taken}), "
                f"{recorded} of it recorded as debt"
            )
    return problems


def open_debts(totals: Mapping[str, AccountTotals]) -> list[str]:
    """One line per account that owes a debt not settled yet, largest first."""
    owing = sorted(((t.debt, account) for account, t in totals.items() if t.debt), reverse=True)
    return [f"account {account} owes {debt}: a debt, taken from its next deposit" for debt, account in owing]


def _by_account(amounts: Iterable[AccountAmount]) -> dict[str, int]:
    found: dict[str, int] = defaultdict(int)
    for account, amount in amounts:
        found[account.lower()] += amount
    return dict(found)
