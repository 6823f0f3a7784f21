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
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Engine, Row, and_, func, insert, or_, select, true, update
from sqlalchemy.exc import IntegrityError

from tritonfleet.payments.errors import DuplicateApiKey, LedgerError, UnknownBatch
from tritonfleet.payments.ledger.database import (
    create_ledger_engine,
    driver_write_transaction,
    migrate,
    write_transaction,
)
from tritonfleet.payments.ledger.records import (
    ZERO,
    AccountAmount,
    AccountTotals,
    ApiKey,
    Batch,
    Charge,
    NewCharge,
    UsageCursor,
    batch_id_for,
)
from tritonfleet.payments.ledger.schema import ApiKeyRow, BatchRow, ChargeRow
from tritonfleet.payments.ledger.states import BatchState, ChargeState, move_batch, move_charge
from tritonfleet.payments.money import Credit

Clock = Callable[[], float]
T = TypeVar("T")

# Request ids per IN list: well under SQLite's 32766 bound variables.
CHUNK = 1000
UNSETTLED = (ChargeState.COMMITTED, ChargeState.BATCHED)
UNFINISHED = (BatchState.BUILDING, BatchState.SENT)


class Ledger:
    """The durable record of usage; see the module docstring. `clock` gives Unix seconds."""

    def __init__(self, engine: Engine, clock: Clock = time.time) -> None:
        self._engine = engine
        self._clock = clock

    @classmethod
    def open(cls, url: str, clock: Clock = time.time) -> Ledger:
        """Connect to the ledger at this SQLAlchemy URL and migrate it to the newest schema."""
        engine = create_ledger_engine(url)
        try:
            migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, clock)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # Charges

    def record_committed(self, charges: Sequence[NewCharge]) -> list[str]:
        """Insert committed charges in one transaction; a request id already there is skipped.

        Returns the request ids that were new, in the order given (each once).
        """
        unique = list({charge.request_id: charge for charge in reversed(charges)}.values())[::-1]
        if not unique:
            return []
        now_s = self._clock()
        new: set[str] = set()
        with driver_write_transaction(self._engine) as cursor:
            for start in range(0, len(unique), CHUNK):
                chunk = unique[start : start + CHUNK]
                cursor.execute(
                    _insert_new_charges(self._engine.dialect.paramstyle, len(chunk)),
                    [value for charge in chunk for value in _charge_values(charge, now_s)],
                )
                new.update(request_id for (request_id,) in cursor.fetchall())
        return [charge.request_id for charge in unique if charge.request_id in new]

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
            select(ChargeRow.account, ChargeRow.state, func.sum(ChargeRow.amount))
            .where(where)
            .group_by(ChargeRow.account, ChargeRow.state)
        )
        sums: dict[str, dict[str, Credit]] = defaultdict(dict)
        with self._engine.connect() as connection:
            for account, state, total in connection.execute(query):
                sums[account][ChargeState(state)] = Credit(int(total))
        return {
            account: AccountTotals(
                committed=by_state.get(ChargeState.COMMITTED, ZERO),
                batched=by_state.get(ChargeState.BATCHED, ZERO),
                settled=by_state.get(ChargeState.SETTLED, ZERO),
            )
            for account, by_state in sums.items()
        }

    # Settlement

    def build_batch(self, max_charges: int, max_accounts: int | None = None) -> Batch | None:
        """Move up to `max_charges` of the oldest committed charges, of at most `max_accounts`
        accounts (what one settle transaction can pay out), into a new batch.

        The batch id is a hash of the batch's request ids (`batch_id_for`), so the same charges
        always make the same batch, on the chain too. None when nothing is committed.
        """
        query = (
            select(ChargeRow.request_id, ChargeRow.account, ChargeRow.amount)
            .where(ChargeRow.state == ChargeState.COMMITTED)
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
            request_ids = [row.request_id for row in rows]
            batch_id = batch_id_for(request_ids)
            self._open_batch(connection, batch_id)
            moved = sum(
                self._move_charges(
                    connection,
                    ChargeRow.request_id.in_(chunk),
                    ChargeState.COMMITTED,
                    ChargeState.BATCHED,
                    batch_id=batch_id,
                )
                for chunk in _chunks(request_ids, CHUNK)
            )
            if moved != len(request_ids):
                raise LedgerError(f"batch {batch_id}: {len(request_ids) - moved} charges moved meanwhile")
            return self._batch(connection, batch_id)

    def mark_sent(self, batch_id: str, tx_hash: str, nonce: int) -> None:
        """Record the settle transaction; called before it is broadcast, and again on a resend."""
        with write_transaction(self._engine) as connection:
            self._move_batch(connection, batch_id, BatchState.SENT, tx_hash=tx_hash, nonce=nonce)

    def mark_confirmed(self, batch_id: str) -> list[AccountAmount]:
        """The chain settled the batch: its charges are settled. Returns the per-account totals."""
        with write_transaction(self._engine) as connection:
            self._move_batch(connection, batch_id, BatchState.CONFIRMED)
            self._move_charges(
                connection, ChargeRow.batch_id == batch_id, ChargeState.BATCHED, ChargeState.SETTLED
            )
            return list(self._batch(connection, batch_id).totals)

    def mark_failed(self, batch_id: str) -> None:
        """The batch will not settle: its charges go back to committed for a later batch.

        Only for a batch the chain can no longer settle (its transaction reverted, or was
        replaced at its nonce): charges re-batched with others get another batch id.
        """
        with write_transaction(self._engine) as connection:
            self._move_batch(connection, batch_id, BatchState.FAILED)
            self._move_charges(
                connection,
                ChargeRow.batch_id == batch_id,
                ChargeState.BATCHED,
                ChargeState.COMMITTED,
                batch_id=None,
            )

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

    def _batch(self, connection: Connection, batch_id: str, account: str | None = None) -> Batch:
        row = connection.execute(select(BatchRow).where(BatchRow.batch_id == batch_id)).one_or_none()
        if row is None:
            raise UnknownBatch(batch_id)
        shares = select(ChargeRow.account, ChargeRow.amount).where(ChargeRow.batch_id == batch_id)
        if account is not None:
            shares = shares.where(ChargeRow.account == account)
        rows = connection.execute(shares).all()
        return Batch(
            batch_id=row.batch_id,
            state=BatchState(row.state),
            tx_hash=row.tx_hash,
            nonce=row.nonce,
            created_at_s=row.created_at_s,
            updated_at_s=row.updated_at_s,
            totals=_sum_by_account(rows),
            charge_count=len(rows),
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


# The charge table's columns in the order `_charge_values` gives them.
_CHARGE_COLUMNS = (
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


def _leading_within(accounts: Sequence[str], max_accounts: int) -> int:
    """How many of the leading `accounts` hold at most `max_accounts` distinct ones."""
    seen: set[str] = set()
    for taken, account in enumerate(accounts):
        seen.add(account)
        if len(seen) > max_accounts:
            return taken
    return len(accounts)


@functools.lru_cache(maxsize=64)
def _insert_new_charges(paramstyle: str, rows: int) -> str:
    """INSERT … ON CONFLICT (request_id) DO NOTHING RETURNING request_id for `rows` charges,
    in SQL that SQLite and PostgreSQL both take, with the driver's placeholders."""
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}[paramstyle]
    row = "(" + ", ".join([mark] * len(_CHARGE_COLUMNS)) + ")"
    return (
        f"INSERT INTO {ChargeRow.__tablename__} ({', '.join(_CHARGE_COLUMNS)}) VALUES "
        + ", ".join([row] * rows)
        + " ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
    )


def _charge_values(charge: NewCharge, now_s: float) -> tuple[Any, ...]:
    return (
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
    return Charge(**{**values, "amount": Credit(values["amount"]), "state": ChargeState(values["state"])})


def _sum_by_account(rows: Iterable[tuple[str, int]]) -> tuple[AccountAmount, ...]:
    # Python ints: exact however large the sum (the chain's amounts are uint256).
    sums: dict[str, int] = defaultdict(int)
    for account, amount in rows:
        sums[account] += amount
    return tuple((account, Credit(total)) for account, total in sorted(sums.items()))


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
