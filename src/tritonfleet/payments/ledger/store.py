"""The durable usage ledger: charges keyed by request id, settlement batches, API keys.

SQLite (one file, embedded) by default; PostgreSQL when several gateways share one ledger.
The schema is in `schema.py`, its migrations under `migrations/`, which `Ledger.open` runs.
Every method is one transaction and blocking; async callers run them in a thread (the gateway's
hot path goes through `ChargeWriter`, which groups many charges into one transaction).

A charge's state moves only through `states.move_charge`, a batch's through `move_batch`;
updates are conditional on the state they move from, so a concurrent writer cannot slip in
between the check and the write.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    ScalarSelect,
    Select,
    and_,
    delete,
    func,
    insert,
    not_,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError

from tritonfleet.payments.errors import DuplicateApiKey, LedgerError, UnknownBatch
from tritonfleet.payments.ledger.database import (
    MIGRATION_TIMEOUT_S,
    create_ledger_engine,
    driver_write_transaction,
    migrate,
    write_transaction,
)
from tritonfleet.payments.ledger.records import (
    MAX_CHARGE,
    AccountAmount,
    AccountTotals,
    ApiKey,
    Batch,
    Charge,
    ChargeKey,
    LeaseGrant,
    NewCharge,
    SettlementFigures,
    UsageCursor,
    batch_id_for,
    debt_request_id,
)
from tritonfleet.payments.ledger.schema import ApiKeyRow, BatchRow, ChargeRow, CreditLeaseRow
from tritonfleet.payments.ledger.states import BatchState, ChargeKind, ChargeState, move_batch, move_charge
from tritonfleet.payments.money import Credit

Clock = Callable[[], float]
T = TypeVar("T")

# Request ids per IN list: well under SQLite's 32766 bound variables.
CHUNK = 1000
UNSETTLED = (ChargeState.COMMITTED, ChargeState.BATCHED)
UNFINISHED = (BatchState.BUILDING, BatchState.SENT)
# A node's refusal can quote a whole transaction; a batch keeps the gist of its last one.
MAX_ERROR_CHARS = 2000


class Ledger:
    """The durable record of usage; see the module docstring. `clock` gives Unix seconds."""

    def __init__(self, engine: Engine, clock: Clock = time.time) -> None:
        self._engine = engine
        self._clock = clock

    @classmethod
    def open(cls, url: str, clock: Clock = time.time) -> Ledger:
        """Connect to the ledger at this SQLAlchemy URL and migrate it to the newest schema."""
        migrating = create_ledger_engine(url, MIGRATION_TIMEOUT_S)
        try:
            migrate(migrating)
        finally:
            migrating.dispose()
        return cls(create_ledger_engine(url), clock)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # Charges

    def record_committed(self, charges: Sequence[NewCharge], resent: bool = False) -> list[ChargeKey]:
        """Insert committed charges in one transaction; a charge already there is skipped.

        Each new charge spends its amount of its lease, in the same transaction, so that it
        counts against the account once: as unsettled, no longer as leased. Returns the keys
        of the charges that were new, in the order given (each once). `resent` charges may have
        been recorded by a writer that died before answering: one found recorded from its own
        lease is that very charge, and is answered as new (its lease was spent then).
        """
        first: dict[ChargeKey, NewCharge] = {}
        for charge in charges:
            first.setdefault(charge.key, charge)
        unique = list(first.values())
        if not unique:
            return []
        now_s = self._clock()
        new: set[ChargeKey] = set()
        paramstyle = self._engine.dialect.paramstyle
        with driver_write_transaction(self._engine) as cursor:
            for start in range(0, len(unique), CHUNK):
                chunk = unique[start : start + CHUNK]
                cursor.execute(
                    _insert_new_charges(paramstyle, len(chunk)),
                    [value for charge in chunk for value in _charge_values(charge, now_s)],
                )
                new.update((account, request_id) for account, request_id in cursor.fetchall())
            spent: dict[str, int] = defaultdict(int)
            for charge in unique:
                if charge.lease_id is not None and charge.key in new:
                    spent[charge.lease_id] += charge.amount
            if spent:
                cursor.executemany(
                    _spend_leases(paramstyle), [(amount, lease) for lease, amount in spent.items()]
                )
        if resent:
            new |= self._recorded_from_their_lease([charge for charge in unique if charge.key not in new])
        return [charge.key for charge in unique if charge.key in new]

    def _recorded_from_their_lease(self, charges: Sequence[NewCharge]) -> set[ChargeKey]:
        # A free request holds no lease (None): the same None is the same charge, and costs nothing.
        leases = {charge.key: charge.lease_id for charge in charges}
        found: set[ChargeKey] = set()
        with self._engine.connect() as connection:
            for chunk in _chunks(list(leases), CHUNK):
                rows = connection.execute(
                    select(ChargeRow.account, ChargeRow.request_id, ChargeRow.lease_id).where(
                        tuple_(ChargeRow.account, ChargeRow.request_id).in_(chunk)
                    )
                )
                found.update((a, r) for a, r, lease_id in rows if leases[(a, r)] == lease_id)
        return found

    def charged(self, account: str, request_id: str) -> bool:
        """Whether the account was charged for this request id: a replay is refused before it
        reaches a node."""
        query = select(ChargeRow.request_id).where(
            ChargeRow.account == account, ChargeRow.request_id == request_id
        )
        with self._engine.connect() as connection:
            return connection.scalar(query) is not None

    def unsettled_by_account(self) -> dict[str, Credit]:
        """Committed and batched (not yet settled) amounts, per account: balances at start-up."""
        query = (
            select(ChargeRow.account, func.sum(ChargeRow.amount))
            .where(ChargeRow.state.in_(UNSETTLED))
            .group_by(ChargeRow.account)
        )
        with self._engine.connect() as connection:
            return {account: Credit(int(total)) for account, total in connection.execute(query)}

    def committed_count(self) -> int:
        """Charges waiting for a batch: the settler settles early once enough wait."""
        query = select(func.count()).select_from(ChargeRow).where(ChargeRow.state == ChargeState.COMMITTED)
        with self._engine.connect() as connection:
            return int(connection.scalar(query) or 0)

    def usage(
        self, account: str, limit: int = 100, before: UsageCursor | None = None, key_id: str | None = None
    ) -> list[Charge]:
        """The account's charges (of one API key, given `key_id`), newest first; `before` is the
        last one's `cursor`."""
        query = (
            select(ChargeRow)
            .where(ChargeRow.account == account, true() if key_id is None else ChargeRow.key_id == key_id)
            .order_by(ChargeRow.created_at_s.desc(), ChargeRow.request_id.desc())
            .limit(limit)
        )
        if before is not None:
            at_s, request_id = before
            query = query.where(
                or_(
                    ChargeRow.created_at_s < at_s,
                    and_(ChargeRow.created_at_s == at_s, ChargeRow.request_id < request_id),
                )
            )
        with self._engine.connect() as connection:
            return [_charge(row) for row in connection.execute(query)]

    def totals(self, account: str) -> AccountTotals:
        return self._totals(ChargeRow.account == account).get(account, AccountTotals())

    def totals_by_account(self) -> dict[str, AccountTotals]:
        return self._totals(true())

    def _totals(self, where: ColumnElement[bool]) -> dict[str, AccountTotals]:
        query = (
            select(ChargeRow.account, ChargeRow.state, ChargeRow.kind, func.sum(ChargeRow.amount))
            .where(where)
            .group_by(ChargeRow.account, ChargeRow.state, ChargeRow.kind)
        )
        sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        debts: dict[str, int] = defaultdict(int)
        with self._engine.connect() as connection:
            for account, state, kind, total in connection.execute(query):
                sums[account][state] += int(total)
                if kind == ChargeKind.DEBT and state in UNSETTLED:
                    debts[account] += int(total)
        return {
            account: AccountTotals(
                committed=Credit(by_state[ChargeState.COMMITTED]),
                batched=Credit(by_state[ChargeState.BATCHED]),
                settled=Credit(by_state[ChargeState.SETTLED]),
                debt=Credit(debts[account]),
            )
            for account, by_state in sums.items()
        }

    # Settlement

    def build_batch(
        self, max_charges: int, max_accounts: int | None = None, hold_debts_of: Collection[str] = ()
    ) -> Batch | None:
        """Move up to `max_charges` of the oldest committed charges, of at most `max_accounts`
        accounts (what one settle transaction can pay out), into a new batch; the debts of the
        `hold_debts_of` accounts stay out (their deposits are empty: nothing to take them from).

        The batch id is a hash of the batch's request ids (`batch_id_for`), so the same charges
        always make the same batch, on the chain too. None when nothing is committed.
        """
        held = and_(ChargeRow.kind == ChargeKind.DEBT, ChargeRow.account.in_(sorted(hold_debts_of)))
        query = (
            select(ChargeRow.request_id, ChargeRow.account, ChargeRow.amount)
            .where(ChargeRow.state == ChargeState.COMMITTED, not_(held) if hold_debts_of else true())
            .order_by(ChargeRow.created_at_s, ChargeRow.request_id)
            .limit(max_charges)
            # Another gateway's settler takes other charges instead of waiting for these.
            .with_for_update(skip_locked=True)
        )
        with write_transaction(self._engine) as connection:
            rows = connection.execute(query).all()
            if not rows:
                return None
            if max_accounts is not None:
                rows = rows[: _leading_within([row.account for row in rows], max_accounts)]
            keys = [(row.account, row.request_id) for row in rows]
            batch_id = batch_id_for(keys)
            self._open_batch(connection, batch_id)
            moved = sum(
                self._move_charges(
                    connection,
                    tuple_(ChargeRow.account, ChargeRow.request_id).in_(chunk),
                    ChargeState.COMMITTED,
                    ChargeState.BATCHED,
                    batch_id=batch_id,
                )
                for chunk in _chunks(keys, CHUNK)
            )
            if moved != len(keys):
                raise LedgerError(f"batch {batch_id}: {len(keys) - moved} charges moved meanwhile")
            return self._batch(connection, batch_id)

    def debtors(self) -> set[str]:
        """The accounts whose debts wait for a batch."""
        query = select(ChargeRow.account).distinct()
        query = query.where(ChargeRow.state == ChargeState.COMMITTED, ChargeRow.kind == ChargeKind.DEBT)
        with self._engine.connect() as connection:
            return set(connection.scalars(query))

    def mark_sent(self, batch_id: str, tx_hash: str, nonce: int) -> None:
        """Record the settle transaction; called before it is broadcast, and again on a resend."""
        with write_transaction(self._engine) as connection:
            self._move_batch(connection, batch_id, BatchState.SENT, tx_hash=tx_hash, nonce=nonce)

    def mark_confirmed(
        self, batch_id: str, block: int | None = None, debts: Sequence[AccountAmount] = ()
    ) -> list[AccountAmount]:
        """The chain settled the batch, in `block`: its charges are settled. Returns the
        per-account totals.

        `debts` are what the settlement could not take from short deposits, per account: each
        becomes a committed charge of kind debt in the same transaction, so that it counts
        against the account's credit at once, and the next batch takes it from the next deposit.
        It dates from the batch, so that the next batch takes it before charges made since.
        """
        with write_transaction(self._engine) as connection:
            self._move_batch(connection, batch_id, BatchState.CONFIRMED, confirmed_block=block)
            self._move_charges(
                connection, ChargeRow.batch_id == batch_id, ChargeState.BATCHED, ChargeState.SETTLED
            )
            batch = self._batch(connection, batch_id)
            for account, amount in debts:
                self._record_debt(connection, batch, account, amount)
            return list(batch.totals)

    def record_refusal(self, batch_id: str, error: str) -> int:
        """Count a send of the batch that the chain refused or that reverted, keeping its error;
        the count so far."""
        with write_transaction(self._engine) as connection:
            attempts = connection.scalar(
                update(BatchRow)
                .where(BatchRow.batch_id == batch_id)
                .values(
                    attempts=BatchRow.attempts + 1,
                    last_error=error[:MAX_ERROR_CHARS],
                    updated_at_s=self._clock(),
                )
                .returning(BatchRow.attempts)
            )
        if attempts is None:
            raise UnknownBatch(batch_id)
        return int(attempts)

    def mark_failed_for_good(self, batch_id: str) -> None:
        """The chain refused the batch too often: it is failed, and its charges stay with it.

        They stay batched, so they still count against their accounts and no later batch takes
        them again, nor is held up behind them; `reconcile` lists them until an operator acts.
        """
        with write_transaction(self._engine) as connection:
            self._move_batch(connection, batch_id, BatchState.FAILED)

    def mark_failed(self, batch_id: str) -> None:
        """The batch will not settle as sent: its charges go back to committed for a later batch.

        Only for a batch the chain can no longer settle (its transaction reverted, or was
        replaced at its nonce): charges re-batched with others get another batch id; the same
        charges alone reopen this batch, with the refusals it counted.
        """
        with write_transaction(self._engine) as connection:
            self._move_batch(connection, batch_id, BatchState.FAILED)
            self._unbatch_charges(connection, batch_id)

    def unbuild_batch(self, batch_id: str) -> None:
        """Undo a batch still building, never sent: its charges go back to committed and the
        batch leaves no trace (no failed batch for an operator to look into)."""
        with write_transaction(self._engine) as connection:
            state = connection.scalar(
                select(BatchRow.state).where(BatchRow.batch_id == batch_id).with_for_update()
            )
            if state != BatchState.BUILDING:
                raise LedgerError(f"batch {batch_id} is {state}, not building: it may have been sent")
            self._unbatch_charges(connection, batch_id)
            connection.execute(delete(BatchRow).where(BatchRow.batch_id == batch_id))

    def unfinished_batches(self) -> list[Batch]:
        """Batches building or sent, oldest first: what a restarted settler must finish."""
        query = (
            select(BatchRow.batch_id)
            .where(BatchRow.state.in_(UNFINISHED))
            .order_by(BatchRow.created_at_s, BatchRow.batch_id)
        )
        with self._engine.connect() as connection:
            return [self._batch(connection, batch_id) for batch_id in connection.scalars(query)]

    def batch(self, batch_id: str) -> Batch:
        with self._engine.connect() as connection:
            return self._batch(connection, batch_id)

    def settlement_figures(self) -> SettlementFigures:
        """Batches by state, the oldest charge still to settle, and the charges set aside."""
        by_state = select(BatchRow.state, func.count()).group_by(BatchRow.state)
        oldest_committed = select(func.min(ChargeRow.created_at_s)).where(
            ChargeRow.state == ChargeState.COMMITTED
        )
        oldest_in_flight = _batched_in(select(func.min(ChargeRow.created_at_s)), UNFINISHED)
        set_aside = _batched_in(select(func.count()).select_from(ChargeRow), (BatchState.FAILED,))
        with self._engine.connect() as connection:
            batches = {BatchState(state): int(count) for state, count in connection.execute(by_state)}
            oldest = [connection.scalar(query) for query in (oldest_committed, oldest_in_flight)]
            set_aside_charges = int(connection.scalar(set_aside) or 0)
        waiting = [at_s for at_s in oldest if at_s is not None]
        return SettlementFigures(batches, min(waiting, default=None), set_aside_charges)

    def batch_totals(self, batch_id: str) -> list[AccountAmount]:
        """What the settle call pays out: per account, sorted by account."""
        return list(self.batch(batch_id).totals)

    def settlements(self, account: str | None = None, limit: int = 100) -> list[Batch]:
        """Batches newest first; for one account, those holding its charges, with its share only."""
        newest_first = (BatchRow.created_at_s.desc(), BatchRow.batch_id)
        query = select(BatchRow.batch_id).order_by(*newest_first).limit(limit)
        if account is not None:
            holding = select(ChargeRow.batch_id).where(ChargeRow.account == account)
            query = query.where(BatchRow.batch_id.in_(holding))
        with self._engine.connect() as connection:
            return [self._batch(connection, batch_id, account) for batch_id in connection.scalars(query)]

    def _open_batch(self, connection: Connection, batch_id: str) -> None:
        now_s = self._clock()
        known = connection.scalar(select(BatchRow.state).where(BatchRow.batch_id == batch_id))
        if known is None:
            connection.execute(
                insert(BatchRow).values(
                    batch_id=batch_id, state=BatchState.BUILDING, created_at_s=now_s, updated_at_s=now_s
                )
            )
        else:
            self._move_batch(connection, batch_id, BatchState.BUILDING, tx_hash=None, nonce=None)

    def _move_batch(self, connection: Connection, batch_id: str, target: BatchState, **values: Any) -> None:
        current = connection.scalar(
            select(BatchRow.state).where(BatchRow.batch_id == batch_id).with_for_update()
        )
        if current is None:
            raise UnknownBatch(batch_id)
        move_batch(BatchState(current), target)
        connection.execute(
            update(BatchRow)
            .where(BatchRow.batch_id == batch_id, BatchRow.state == current)
            .values(state=target, updated_at_s=self._clock(), **values)
        )

    def _move_charges(
        self,
        connection: Connection,
        which: ColumnElement[bool],
        current: ChargeState,
        target: ChargeState,
        **values: Any,
    ) -> int:
        move_charge(current, target)
        result = connection.execute(
            update(ChargeRow)
            .where(which, ChargeRow.state == current)
            .values(state=target, updated_at_s=self._clock(), **values)
        )
        return result.rowcount

    def _unbatch_charges(self, connection: Connection, batch_id: str) -> None:
        """The batch's charges back to committed, for a later batch to take."""
        self._move_charges(
            connection,
            ChargeRow.batch_id == batch_id,
            ChargeState.BATCHED,
            ChargeState.COMMITTED,
            batch_id=None,
        )

    def _batch(self, connection: Connection, batch_id: str, account: str | None = None) -> Batch:
        row = connection.execute(select(BatchRow).where(BatchRow.batch_id == batch_id)).one_or_none()
        if row is None:
            raise UnknownBatch(batch_id)
        shares = select(ChargeRow.account, ChargeRow.amount).where(ChargeRow.batch_id == batch_id)
        if account is not None:
            shares = shares.where(ChargeRow.account == account)
        rows = connection.execute(shares).all()
        debts: list[tuple[str, int]] = []
        if row.state == BatchState.CONFIRMED and rows:
            # Looked up by the batch's accounts, which lead the charge table's key.
            left = select(ChargeRow.account, ChargeRow.amount).where(
                ChargeRow.account.in_(sorted({account for account, _ in rows})),
                ChargeRow.request_id.like(debt_request_id(batch_id) + "%"),
                ChargeRow.kind == ChargeKind.DEBT,
            )
            debts = [(account, amount) for account, amount in connection.execute(left)]
        return Batch(
            batch_id=row.batch_id,
            state=BatchState(row.state),
            tx_hash=row.tx_hash,
            nonce=row.nonce,
            created_at_s=row.created_at_s,
            updated_at_s=row.updated_at_s,
            totals=_sum_by_account(rows),
            charge_count=len(rows),
            confirmed_block=row.confirmed_block,
            attempts=row.attempts,
            last_error=row.last_error,
            debts=_sum_by_account(debts),
        )

    def _record_debt(self, connection: Connection, batch: Batch, account: str, amount: int) -> None:
        """A committed debt charge of `amount`, in parts of at most MAX_CHARGE; once per batch
        and account, whoever records it again."""
        now_s = self._clock()
        for part, start in enumerate(range(0, amount, MAX_CHARGE)):
            request_id = debt_request_id(batch.batch_id, part)
            known = connection.scalar(
                select(ChargeRow.request_id).where(
                    ChargeRow.account == account, ChargeRow.request_id == request_id
                )
            )
            if known is not None:
                continue
            connection.execute(
                insert(ChargeRow).values(
                    account=account,
                    request_id=request_id,
                    model="",
                    version="",
                    amount=min(MAX_CHARGE, amount - start),
                    state=ChargeState.COMMITTED,
                    batch_id=None,
                    created_at_s=batch.created_at_s,
                    updated_at_s=now_s,
                    key_id="",
                    lease_id=None,
                    kind=ChargeKind.DEBT,
                )
            )

    # API keys

    def add_api_key(self, key_hash: str, account: str, label: str = "") -> ApiKey:
        key = ApiKey(key_hash, account, label, created_at_s=self._clock(), revoked_at_s=None)
        try:
            with write_transaction(self._engine) as connection:
                connection.execute(insert(ApiKeyRow).values(**vars(key)))
        except IntegrityError as exc:
            raise DuplicateApiKey(f"an API key with this hash exists: {key_hash[:8]}…") from exc
        return key

    def account_for_key(self, key_hash: str) -> str | None:
        """The account of an active key; None for an unknown or revoked one."""
        query = select(ApiKeyRow.account).where(
            ApiKeyRow.key_hash == key_hash, ApiKeyRow.revoked_at_s.is_(None)
        )
        with self._engine.connect() as connection:
            return connection.scalar(query)

    def revoke_api_key(self, key_hash: str) -> bool:
        """Revoke an active key; False when there was none to revoke."""
        with write_transaction(self._engine) as connection:
            result = connection.execute(
                update(ApiKeyRow)
                .where(ApiKeyRow.key_hash == key_hash, ApiKeyRow.revoked_at_s.is_(None))
                .values(revoked_at_s=self._clock())
            )
            return result.rowcount == 1

    def api_keys(self, account: str) -> list[ApiKey]:
        """The account's keys, revoked ones included, newest first."""
        query = (
            select(ApiKeyRow)
            .where(ApiKeyRow.account == account)
            .order_by(ApiKeyRow.created_at_s.desc(), ApiKeyRow.key_hash)
        )
        with self._engine.connect() as connection:
            return [ApiKey(**row._asdict()) for row in connection.execute(query)]

    def all_active_keys(self) -> dict[str, str]:
        """key hash → account of every active key, for the gateway to hold in memory."""
        query = select(ApiKeyRow.key_hash, ApiKeyRow.account).where(ApiKeyRow.revoked_at_s.is_(None))
        with self._engine.connect() as connection:
            return {key_hash: account for key_hash, account in connection.execute(query)}

    # Credit leases

    def take_lease(
        self,
        holder: str,
        account: str,
        want: Credit,
        *,
        deposit: Credit,
        pending_withdrawal: Credit,
        chain_block: int,
        ttl_s: float,
        lease_id: str | None = None,
    ) -> LeaseGrant:
        """Grant up to `want` of the account's free credit to the holder's lease, atomically.

            free = deposit - pending_withdrawal - unsettled - outstanding live leases

        `deposit` and `pending_withdrawal` are the holder's chain view as of `chain_block`; the
        charges of a batch confirmed after that block count as unsettled still, since that
        deposit does not show their settlement yet. Grants for one account are serialized
        (PostgreSQL: an advisory lock on the account; SQLite: its write lock), and the sums are
        read in one statement, one snapshot, so no two holders are granted the same credit.

        Adds to `lease_id` while it is live, else opens a new lease; renews it for `ttl_s`.
        """
        now_s = self._clock()
        with write_transaction(self._engine) as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(hashtextextended(:account, 0))"), {"account": account}
                )
            unsettled, settled_unseen, leased, oldest = connection.execute(
                select(*_account_commitments(account, chain_block, now_s))
            ).one()
            free = deposit - pending_withdrawal - int(unsettled) - int(settled_unseen) - int(leased)
            granted = max(0, min(want, free))
            expires_at_s = now_s + ttl_s
            if lease_id is not None:
                extended = connection.execute(
                    update(CreditLeaseRow)
                    .where(
                        CreditLeaseRow.lease_id == lease_id,
                        CreditLeaseRow.holder == holder,
                        CreditLeaseRow.account == account,
                        CreditLeaseRow.expires_at_s > now_s,
                    )
                    .values(amount=CreditLeaseRow.amount + granted, expires_at_s=expires_at_s)
                )
                if extended.rowcount != 1:
                    lease_id = None  # lapsed: what it held was free to others meanwhile
            if lease_id is None:
                lease_id = uuid.uuid4().hex
                connection.execute(
                    insert(CreditLeaseRow).values(
                        lease_id=lease_id,
                        account=account,
                        holder=holder,
                        amount=granted,
                        spent=0,
                        expires_at_s=expires_at_s,
                        created_at_s=now_s,
                    )
                )
        return LeaseGrant(lease_id, Credit(granted), Credit(free - granted), expires_at_s, oldest)

    def renew_leases(self, holder: str, lease_ids: Sequence[str], ttl_s: float) -> set[str]:
        """Extend the holder's live leases among `lease_ids` by `ttl_s`; the ids renewed (the
        others lapsed, and what they held was free to others meanwhile).

        Also forgets leases lapsed for over a ttl: a late charge of one only finds no lease to
        spend from, which changes nothing.
        """
        now_s = self._clock()
        renewed: set[str] = set()
        with write_transaction(self._engine) as connection:
            for chunk in _chunks(lease_ids, CHUNK):
                renewed.update(
                    connection.scalars(
                        update(CreditLeaseRow)
                        .where(
                            CreditLeaseRow.lease_id.in_(chunk),
                            CreditLeaseRow.holder == holder,
                            CreditLeaseRow.expires_at_s > now_s,
                        )
                        .values(expires_at_s=now_s + ttl_s)
                        .returning(CreditLeaseRow.lease_id)
                    )
                )
            connection.execute(delete(CreditLeaseRow).where(CreditLeaseRow.expires_at_s < now_s - ttl_s))
        return renewed

    def return_lease(self, lease_id: str, amount: Credit) -> None:
        """Give back `amount` of a lease that the holder will not spend; a lease left with
        nothing outstanding is closed."""
        with write_transaction(self._engine) as connection:
            connection.execute(
                update(CreditLeaseRow)
                .where(CreditLeaseRow.lease_id == lease_id)
                .values(amount=CreditLeaseRow.amount - amount)
            )
            connection.execute(
                delete(CreditLeaseRow).where(
                    CreditLeaseRow.lease_id == lease_id, CreditLeaseRow.amount <= CreditLeaseRow.spent
                )
            )

    def leased(self, account: str) -> Credit:
        """What the account's live leases hold, on every gateway: credit held, not yet charged."""
        with self._engine.connect() as connection:
            return Credit(int(connection.scalar(select(_outstanding(account, self._clock()))) or 0))


# The charge table's columns in the order `_charge_values` gives them.
_CHARGE_COLUMNS = (
    "lease_id",
    "request_id",
    "account",
    "model",
    "version",
    "amount",
    "key_id",
    "state",
    "batch_id",
    "created_at_s",
    "updated_at_s",
)


def _outstanding(account: str, now_s: float) -> ScalarSelect[Any]:
    lease = CreditLeaseRow
    return (
        select(func.coalesce(func.sum(lease.amount - lease.spent), 0))
        .where(lease.account == account, lease.expires_at_s > now_s, lease.amount > lease.spent)
        .scalar_subquery()
    )


def _account_commitments(account: str, chain_block: int, now_s: float) -> tuple[ScalarSelect[Any], ...]:
    """What counts against the account's deposit as of `chain_block`, as subqueries of one
    statement: unsettled charges, charges settled after that block, live leases' outstanding
    credit; and the time of its oldest unsettled charge."""
    mine = ChargeRow.account == account
    unsettled = mine, ChargeRow.state.in_(UNSETTLED)
    settled_after = select(BatchRow.batch_id).where(BatchRow.confirmed_block > chain_block)
    return (
        select(func.coalesce(func.sum(ChargeRow.amount), 0)).where(*unsettled).scalar_subquery(),
        select(func.coalesce(func.sum(ChargeRow.amount), 0))
        .where(mine, ChargeRow.state == ChargeState.SETTLED, ChargeRow.batch_id.in_(settled_after))
        .scalar_subquery(),
        _outstanding(account, now_s),
        select(func.min(ChargeRow.created_at_s)).where(*unsettled).scalar_subquery(),
    )


def _batched_in(query: Select[Any], states: Sequence[BatchState]) -> Select[Any]:
    """`query` over the charges of the batches in these states."""
    return query.join(BatchRow, BatchRow.batch_id == ChargeRow.batch_id).where(
        ChargeRow.state == ChargeState.BATCHED, BatchRow.state.in_(states)
    )


def _leading_within(accounts: Sequence[str], max_accounts: int) -> int:
    """How many of the leading `accounts` hold at most `max_accounts` distinct ones."""
    seen: set[str] = set()
    for taken, account in enumerate(accounts):
        seen.add(account)
        if len(seen) > max_accounts:
            return taken
    return len(accounts)


# Each driver's placeholder: sqlite3's, psycopg's.
_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@functools.lru_cache(maxsize=64)
def _insert_new_charges(paramstyle: str, rows: int) -> str:
    """INSERT … ON CONFLICT DO NOTHING RETURNING the new charges' keys, for `rows` charges,
    in SQL that SQLite and PostgreSQL both take, with the driver's placeholders."""
    mark = _MARKS[paramstyle]
    row = "(" + ", ".join([mark] * len(_CHARGE_COLUMNS)) + ")"
    return (
        f"INSERT INTO {ChargeRow.__tablename__} ({', '.join(_CHARGE_COLUMNS)}) VALUES "
        + ", ".join([row] * rows)
        + " ON CONFLICT (account, request_id) DO NOTHING RETURNING account, request_id"
    )


@functools.lru_cache(maxsize=4)
def _spend_leases(paramstyle: str) -> str:
    mark = _MARKS[paramstyle]
    return f"UPDATE {CreditLeaseRow.__tablename__} SET spent = spent + {mark} WHERE lease_id = {mark}"


def _charge_values(charge: NewCharge, now_s: float) -> tuple[Any, ...]:
    return (
        charge.lease_id,
        charge.request_id,
        charge.account,
        charge.model,
        charge.version,
        charge.amount,
        charge.key_id,
        ChargeState.COMMITTED.value,
        None,
        now_s,
        now_s,
    )


def _charge(row: Row[Any]) -> Charge:
    values = row._asdict()
    return Charge(
        **{
            **values,
            "amount": Credit(values["amount"]),
            "state": ChargeState(values["state"]),
            "kind": ChargeKind(values["kind"]),
        }
    )


def _sum_by_account(rows: Iterable[tuple[str, int]]) -> tuple[AccountAmount, ...]:
    # Python ints: exact however large the sum (the chain's amounts are uint256).
    sums: dict[str, int] = defaultdict(int)
    for account, amount in rows:
        sums[account] += amount
    return tuple((account, Credit(total)) for account, total in sorted(sums.items()))


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
