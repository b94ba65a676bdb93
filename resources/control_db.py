"""The control database: what was ingested, from which files, by which run (SQLAlchemy).

SQLite by default; any SQLAlchemy URL (PostgreSQL in production) through
METERCLOSE_CONTROL_DB_URL. The schema is migrated with Alembic, never created ad hoc.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from rating.periods import next_period
from resources.base import ConfigurableResource

metadata = sa.MetaData()

ingest_batch = sa.Table(
    "ingest_batch",
    metadata,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("received_date", sa.Date, nullable=False),
    sa.Column("files", sa.Integer, nullable=False),
    sa.Column("raw_lines", sa.BigInteger, nullable=False),
    sa.Column("accepted", sa.BigInteger, nullable=False),
    sa.Column("duplicates", sa.BigInteger, nullable=False),
    sa.Column("quarantined", sa.BigInteger, nullable=False),
    sa.Column("reference_digest", sa.String(64), nullable=False),
    sa.Column("lateness_days", sa.Integer, nullable=False),
    sa.Column("first_run_id", sa.String(64)),
    sa.Column("last_run_id", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
ingest_file = sa.Table(
    "ingest_file",
    metadata,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("file", sa.String(512), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("raw_lines", sa.BigInteger, nullable=False),
    sa.Column("accepted", sa.BigInteger, nullable=False),
    sa.Column("duplicates", sa.BigInteger, nullable=False),
    sa.Column("quarantined", sa.BigInteger, nullable=False),
)
ingest_day = sa.Table(
    "ingest_day",
    metadata,
    sa.Column("received_date", sa.Date, primary_key=True),
    sa.Column("batch_id", sa.String(64), nullable=False),
    sa.Column("accepted_keys_digest", sa.String(64), nullable=False),
    sa.Column("window_digest", sa.String(64), nullable=False),
    sa.Column("reference_digest", sa.String(64), nullable=False),
    sa.Column("landing_signature", sa.String(64), nullable=False),
    # 'writing' while a day's tables are being replaced, then 'done', or 'checks_failed'
    # when a blocking check failed: a crash in between leaves 'writing', which the sensors
    # and the CLI re-ingest; the close rates only 'done' days.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
)

# A closed month: never rewritten after this row exists (see the close assets).
period_lock = sa.Table(
    "period_lock",
    metadata,
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("locked_by", sa.String(128), nullable=False),
    sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("reference_digest", sa.String(64), nullable=False),
    sa.Column("snapshot_path", sa.String(1024), nullable=False),
)

# A controller's request to restate a locked month; the difference is booked in the open
# period, whose lock records where (booked_in).
reprocess_request = sa.Table(
    "reprocess_request",
    metadata,
    sa.Column("request_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("requested_by", sa.String(128), nullable=False),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.String(1024), nullable=False),
    sa.Column("booked_in", sa.String(7)),
)

# Who approved which period's journals for which entity, on which journal content (a
# digest): journals that change after approval need approving again.
journal_approval = sa.Table(
    "journal_approval",
    metadata,
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("entity_id", sa.String(64), primary_key=True),
    sa.Column("approved_by", sa.String(128), nullable=False),
    sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("journals_digest", sa.String(64), nullable=False),
    sa.Column("journals", sa.Integer, nullable=False),
    sa.Column("lines", sa.Integer, nullable=False),
)

# Canonical business events waiting for delivery (pending → sent → confirmed | rejected).
event_outbox = sa.Table(
    "event_outbox",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("correlation_id", sa.String(128), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# The publish ledger: one row per ERP document (a journal part) and target ERP.
# pending (waiting for approval or its turn) → sent (handed to the ERP; outcome unknown
# until confirmed) → confirmed (the ERP holds it, posted: erp_document_id) | rejected (a
# business rejection, with the ERP's message; sent again only once its content changes).
erp_publication = sa.Table(
    "erp_publication",
    metadata,
    sa.Column("target", sa.String(128), primary_key=True),
    sa.Column("external_id", sa.String(160), primary_key=True),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("entity_id", sa.String(64), nullable=False),
    sa.Column("journal_id", sa.String(128), nullable=False),
    sa.Column("accounting_date", sa.Date, nullable=False),
    sa.Column("lines", sa.Integer, nullable=False),
    # Exact decimal text: SQLite has no exact numeric type.
    sa.Column("functional_debit", sa.String(48), nullable=False),
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("erp_document_id", sa.String(64)),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("confirmed_at", sa.DateTime(timezone=True)),
)

# A controller's word that a landing day is complete as it stands (no files, or a known
# partial day, or a quarantine rate above the error threshold): who, when and why.
landing_confirmation = sa.Table(
    "landing_confirmation",
    metadata,
    sa.Column("received_date", sa.Date, primary_key=True),
    sa.Column("confirmed_by", sa.String(128), nullable=False),
    sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.String(1024), nullable=False),
    # What the day looked like when it was confirmed (missing, quarantine_high).
    sa.Column("status_confirmed", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(64)),
)

# Every transition of a month (or month × entity): the month's state is read from here,
# never inferred from which files exist. entity_id '' covers the whole month.
period_transition = sa.Table(
    "period_transition",
    metadata,
    sa.Column("transition_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("entity_id", sa.String(64), nullable=False),
    sa.Column("transition", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("digest", sa.String(64)),
    sa.Column("detail", sa.String(1024)),
)

_MIGRATIONS = Path(__file__).parent / "migrations"
# URLs this process has migrated: the schema is brought up to date once, at start-up (the
# first use), not on every sensor tick or step.
_MIGRATED: set[str] = set()


@dataclass(frozen=True)
class Confirmation:
    received_date: date
    confirmed_by: str
    confirmed_at: datetime
    reason: str
    status_confirmed: str
    run_id: str | None


@dataclass(frozen=True)
class Transition:
    period: str
    entity_id: str
    transition: str
    actor: str
    at: datetime
    run_id: str | None
    digest: str | None
    detail: str | None


@dataclass(frozen=True)
class PeriodLock:
    period: str
    locked_by: str
    locked_at: datetime
    run_id: str
    reference_digest: str
    snapshot_path: str


class PeriodLockedError(RuntimeError):
    """A closed month was about to be rewritten."""


@dataclass(frozen=True)
class FileCounts:
    file: str
    sha256: str
    size_bytes: int
    raw_lines: int
    accepted: int
    duplicates: int
    quarantined: int


@dataclass(frozen=True)
class DayRecord:
    received_date: date
    batch_id: str
    accepted_keys_digest: str
    window_digest: str
    reference_digest: str
    landing_signature: str
    status: str
    run_id: str | None
    ingested_at: datetime


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Parallel steps share the file: WAL lets readers run beside the one writer, and the
    # busy timeout makes a second writer wait instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def window_digest(days: Iterable[tuple[date, str]]) -> str:
    """Digest of the accepted-key digests a day's deduplication looked at."""
    h = hashlib.sha256()
    for day, digest in sorted(days):
        h.update(f"{day.isoformat()}={digest};".encode())
    return h.hexdigest()[:32]


class ControlDb:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            database = self.engine.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    def migrate(self) -> None:
        """Bring the schema up to date, once per process and database."""
        if self.url in _MIGRATED:
            return
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        if self.engine.url.database not in (None, "", ":memory:"):
            _MIGRATED.add(self.url)

    def mark_writing(self, received_date: date, run_id: str | None) -> None:
        """Flag a day whose tables are about to be replaced (see ``ingest_day.status``)."""
        with self.engine.begin() as conn:
            conn.execute(
                ingest_day.update()
                .where(ingest_day.c.received_date == received_date)
                .values(status="writing", run_id=run_id)
            )

    def record_ingest(
        self,
        *,
        received_date: date,
        batch_id: str,
        files: Sequence[FileCounts],
        accepted_keys_digest: str,
        window_digest: str,
        reference_digest: str,
        landing_signature: str,
        lateness_days: int,
        run_id: str | None,
        status: str = "done",
    ) -> None:
        now = datetime.now(UTC)
        totals = {
            key: sum(getattr(f, key) for f in files)
            for key in ("raw_lines", "accepted", "duplicates", "quarantined")
        }
        batch_values = dict(
            received_date=received_date,
            files=len(files),
            **totals,
            reference_digest=reference_digest,
            lateness_days=lateness_days,
            last_run_id=run_id,
            updated_at=now,
        )
        day_values = dict(
            batch_id=batch_id,
            accepted_keys_digest=accepted_keys_digest,
            window_digest=window_digest,
            reference_digest=reference_digest,
            landing_signature=landing_signature,
            status=status,
            run_id=run_id,
            ingested_at=now,
        )
        try:
            self._record(batch_id, received_date, files, batch_values, day_values, run_id, now)
        except sa.exc.IntegrityError:
            # Another run inserted the same batch or day between our update and insert:
            # its row is there now, so the retry takes the update path.
            self._record(batch_id, received_date, files, batch_values, day_values, run_id, now)

    def _record(
        self,
        batch_id: str,
        received_date: date,
        files: Sequence[FileCounts],
        batch_values: dict[str, Any],
        day_values: dict[str, Any],
        run_id: str | None,
        now: datetime,
    ) -> None:
        with self.engine.begin() as conn:
            # Update first, insert if absent: two runs on one day must not collide on the key.
            updated = conn.execute(
                ingest_batch.update()
                .where(ingest_batch.c.batch_id == batch_id)
                .values(**batch_values)
            ).rowcount
            if not updated:
                conn.execute(
                    ingest_batch.insert().values(
                        batch_id=batch_id, first_run_id=run_id, created_at=now, **batch_values
                    )
                )
            conn.execute(ingest_file.delete().where(ingest_file.c.batch_id == batch_id))
            if files:
                conn.execute(
                    ingest_file.insert(),
                    [dict(batch_id=batch_id, **f.__dict__) for f in files],
                )
            updated = conn.execute(
                ingest_day.update()
                .where(ingest_day.c.received_date == received_date)
                .values(**day_values)
            ).rowcount
            if not updated:
                conn.execute(ingest_day.insert().values(received_date=received_date, **day_values))

    def days(self, first: date | None = None, last: date | None = None) -> list[DayRecord]:
        query = sa.select(ingest_day).order_by(ingest_day.c.received_date)
        if first is not None:
            query = query.where(ingest_day.c.received_date >= first)
        if last is not None:
            query = query.where(ingest_day.c.received_date <= last)
        with self.engine.connect() as conn:
            return [DayRecord(**row) for row in conn.execute(query).mappings()]

    def files(self, received_date: date) -> list[FileCounts]:
        query = (
            sa.select(ingest_file)
            .join(ingest_day, ingest_day.c.batch_id == ingest_file.c.batch_id)
            .where(ingest_day.c.received_date == received_date)
            .order_by(ingest_file.c.file)
        )
        with self.engine.connect() as conn:
            return [
                FileCounts(**{k: v for k, v in row.items() if k != "batch_id"})
                for row in conn.execute(query).mappings()
            ]

    def totals_by_day(self, first: date, last: date) -> dict[date, dict[str, int]]:
        """Line counts of the batch each landing day currently stands on."""
        query = (
            sa.select(
                ingest_day.c.received_date,
                ingest_batch.c.raw_lines,
                ingest_batch.c.accepted,
                ingest_batch.c.duplicates,
                ingest_batch.c.quarantined,
            )
            .join(ingest_batch, ingest_batch.c.batch_id == ingest_day.c.batch_id)
            .where(ingest_day.c.received_date.between(first, last))
        )
        with self.engine.connect() as conn:
            return {
                row["received_date"]: {k: int(v) for k, v in row.items() if k != "received_date"}
                for row in conn.execute(query).mappings()
            }

    def locks(self) -> list[PeriodLock]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(period_lock).order_by(period_lock.c.period))
            return [PeriodLock(**row) for row in rows.mappings()]

    def lock(self, period: str) -> PeriodLock | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(period_lock).where(period_lock.c.period == period))
                .mappings()
                .first()
            )
        return PeriodLock(**row) if row else None

    def open_period(self) -> str | None:
        """The earliest month not locked after the first locked one (None before any lock)."""
        locked = [lock.period for lock in self.locks()]
        if not locked:
            return None
        month = locked[0]
        while month in locked:
            month = next_period(month)
        return month

    def record_lock(
        self, period: str, locked_by: str, run_id: str, reference_digest: str, snapshot_path: str
    ) -> PeriodLock:
        """Lock a closed month. Only the open period can be locked (or any month before the
        first lock: it starts the books)."""
        open_period = self.open_period()
        if self.lock(period) is not None:
            raise PeriodLockedError(f"period {period} is already locked")
        if open_period is not None and period != open_period:
            raise PeriodLockedError(
                f"period {period} cannot be locked: the open period is {open_period} "
                "(months are closed in order)"
            )
        row: dict[str, Any] = {
            "period": period,
            "locked_by": locked_by,
            "locked_at": datetime.now(UTC),
            "run_id": run_id,
            "reference_digest": reference_digest,
            "snapshot_path": snapshot_path,
        }
        with self.engine.begin() as conn:
            conn.execute(period_lock.insert().values(**row))
            # Reprocessing booked in this month is done.
            conn.execute(
                reprocess_request.update()
                .where(reprocess_request.c.booked_in.is_(None))
                .where(reprocess_request.c.period < period)
                .values(booked_in=period)
            )
        return PeriodLock(**row)

    def request_reprocess(self, period: str, requested_by: str, reason: str) -> str:
        """Ask for a locked month to be restated in the next close of the open period."""
        if self.lock(period) is None:
            raise PeriodLockedError(
                f"period {period} is not locked: close it again instead of reprocessing it"
            )
        open_period = self.open_period()
        assert open_period is not None
        with self.engine.begin() as conn:
            conn.execute(
                reprocess_request.insert().values(
                    period=period,
                    requested_by=requested_by,
                    requested_at=datetime.now(UTC),
                    reason=reason,
                )
            )
        return open_period

    def reprocess_requests(self) -> list[dict[str, Any]]:
        """Every request to restate a locked month, oldest first, with where it was booked
        (None while pending: the open period's lock books it)."""
        query = sa.select(reprocess_request).order_by(reprocess_request.c.request_id)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def reprocessing(self, period: str) -> list[str]:
        """Locked months to restate in ``period``'s close: requests not yet booked, or booked
        in ``period`` itself (a rerun of its close books them again, the same way)."""
        query = (
            sa.select(reprocess_request.c.period)
            .where(reprocess_request.c.period < period)
            .where(
                sa.or_(
                    reprocess_request.c.booked_in.is_(None),
                    reprocess_request.c.booked_in == period,
                )
            )
            .distinct()
            .order_by(reprocess_request.c.period)
        )
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def approve(
        self,
        period: str,
        entity_id: str,
        approved_by: str,
        digest: str,
        journals: int,
        lines: int,
        events: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Record (or renew) the approval of a period's journals for an entity, and queue
        its events in the same transaction: an approval never goes unannounced."""
        if self.lock(period) is not None:
            raise PeriodLockedError(f"period {period} is locked; its journals were approved")
        row = {
            "period": period,
            "entity_id": entity_id,
            "approved_by": approved_by,
            "approved_at": datetime.now(UTC),
            "journals_digest": digest,
            "journals": journals,
            "lines": lines,
        }
        with self.engine.begin() as conn:
            conn.execute(
                journal_approval.delete()
                .where(journal_approval.c.period == period)
                .where(journal_approval.c.entity_id == entity_id)
            )
            conn.execute(journal_approval.insert().values(**row))
            if events:
                self._enqueue(conn, events)

    def approvals(self, period: str) -> dict[str, dict[str, Any]]:
        """entity → approval row, for a period."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(journal_approval).where(journal_approval.c.period == period)
            ).mappings()
            return {row["entity_id"]: dict(row) for row in rows}

    def enqueue_events(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Add events to the outbox, once each. An event already there with the same
        payload is left as it is (a rerun of the close makes the same events); one whose
        payload changed is updated while still pending, or — already delivered — follows
        as a new event ``<id>#<payload digest>``. Returns how many rows were added or
        changed."""
        if not events:
            return 0
        with self.engine.begin() as conn:
            return self._enqueue(conn, events)

    def _enqueue(self, conn: sa.Connection, events: Sequence[Mapping[str, Any]]) -> int:
        now = datetime.now(UTC)
        changed = 0
        known = {
            row["event_id"]: row
            for row in conn.execute(
                sa.select(
                    event_outbox.c.event_id, event_outbox.c.payload_sha256, event_outbox.c.state
                ).where(event_outbox.c.event_id.in_([e["event_id"] for e in events]))
            ).mappings()
        }
        fields = (
            "event_id", "event_type", "schema_version", "period", "correlation_id",
            "payload", "payload_sha256",
        )  # fmt: skip
        new = []
        for event in events:
            row = {k: event[k] for k in fields}
            old = known.get(row["event_id"])
            if old is not None and old["payload_sha256"] == row["payload_sha256"]:
                continue
            if old is not None and old["state"] == "pending":
                conn.execute(
                    event_outbox.update()
                    .where(event_outbox.c.event_id == row["event_id"])
                    .values(
                        payload=row["payload"],
                        payload_sha256=row["payload_sha256"],
                        updated_at=now,
                    )
                )
                changed += 1
                continue
            if old is not None:
                row["event_id"] = f"{row['event_id']}#{row['payload_sha256'][:8]}"
                exists = conn.execute(
                    sa.select(event_outbox.c.event_id).where(
                        event_outbox.c.event_id == row["event_id"]
                    )
                ).first()
                if exists:
                    continue
            new.append(
                {
                    **row,
                    "state": "pending",
                    "attempts": 0,
                    "last_error": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        if new:
            conn.execute(event_outbox.insert(), new)
        return changed + len(new)

    def confirm_day(
        self, received_date: date, confirmed_by: str, reason: str, status: str, run_id: str | None
    ) -> Confirmation:
        """Record (or renew) a controller's confirmation that a landing day is complete."""
        row: dict[str, Any] = {
            "received_date": received_date,
            "confirmed_by": confirmed_by,
            "confirmed_at": datetime.now(UTC),
            "reason": reason,
            "status_confirmed": status,
            "run_id": run_id,
        }
        with self.engine.begin() as conn:
            conn.execute(
                landing_confirmation.delete().where(
                    landing_confirmation.c.received_date == received_date
                )
            )
            conn.execute(landing_confirmation.insert().values(**row))
        return Confirmation(**row)

    def confirmations(self, first: date, last: date) -> dict[date, Confirmation]:
        query = sa.select(landing_confirmation).where(
            landing_confirmation.c.received_date.between(first, last)
        )
        with self.engine.connect() as conn:
            return {
                row["received_date"]: Confirmation(**row) for row in conn.execute(query).mappings()
            }

    def record_transition(
        self,
        period: str,
        transition: str,
        actor: str,
        run_id: str | None,
        *,
        entity_id: str = "",
        digest: str | None = None,
        detail: str | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                period_transition.insert().values(
                    period=period,
                    entity_id=entity_id,
                    transition=transition,
                    actor=actor,
                    at=datetime.now(UTC),
                    run_id=run_id,
                    digest=digest,
                    detail=detail,
                )
            )

    def transitions(self, period: str | None = None) -> list[Transition]:
        """A month's transitions (every month's with None), oldest first."""
        query = sa.select(period_transition).order_by(period_transition.c.transition_id)
        if period is not None:
            query = query.where(period_transition.c.period == period)
        with self.engine.connect() as conn:
            return [
                Transition(**{k: v for k, v in row.items() if k != "transition_id"})
                for row in conn.execute(query).mappings()
            ]

    def outbox(self, period: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(event_outbox).order_by(event_outbox.c.event_id)
        if period is not None:
            query = query.where(event_outbox.c.period == period)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def dispose(self) -> None:
        self.engine.dispose()


class ControlDbResource(ConfigurableResource):
    """The control database (SQLAlchemy URL; secrets belong in the environment)."""

    url: str

    def get(self) -> ControlDb:
        db = ControlDb(self.url)
        db.migrate()
        return db
