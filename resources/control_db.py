"""The control database: what was ingested, from which files, by which run (SQLAlchemy).

SQLite by default; any SQLAlchemy URL (PostgreSQL in production) through
METERCLOSE_CONTROL_DB_URL. The schema is migrated with Alembic, never created ad hoc.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

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

_MIGRATIONS = Path(__file__).parent / "migrations"


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
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

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

    def dispose(self) -> None:
        self.engine.dispose()


class ControlDbResource(dg.ConfigurableResource):  # type: ignore[misc]
    """The control database (SQLAlchemy URL; secrets belong in the environment)."""

    url: str

    def get(self) -> ControlDb:
        db = ControlDb(self.url)
        db.migrate()
        return db
