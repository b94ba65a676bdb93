"""The control database on SQLite and on a real PostgreSQL server, migrated by Alembic."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from resources.control_db import ControlDb, FileCounts
from tests import postgres


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if not postgres.available():
        pytest.skip("PostgreSQL 15 binaries not installed")
    with postgres.cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ControlDb]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'control.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    control = ControlDb(url)
    control.migrate()
    yield control
    with control.engine.begin() as conn:
        for table in (
            "ingest_day",
            "ingest_file",
            "ingest_batch",
            "event_outbox",
            "journal_approval",
            "reprocess_request",
            "period_lock",
            "landing_confirmation",
            "period_transition",
        ):
            conn.execute(sa.text(f"DELETE FROM {table}"))
    control.dispose()


def record(db: ControlDb, day: date, batch: str, accepted: int) -> None:
    db.record_ingest(
        received_date=day,
        batch_id=batch,
        files=[FileCounts("d/a.ndjson", "ab" * 32, 100, accepted + 1, accepted, 0, 1)],
        accepted_keys_digest=f"keys-{accepted}",
        window_digest="w",
        reference_digest="r",
        landing_signature="s",
        lateness_days=35,
        run_id="run-1",
    )


def test_migrations_are_idempotent_and_reruns_replace_a_days_record(db: ControlDb) -> None:
    db.migrate()  # a second upgrade is a no-op
    day = date(2026, 9, 3)
    record(db, day, "ib-1", accepted=5)
    record(db, day, "ib-1", accepted=7)  # the same batch re-ingested after a reference fix
    assert db.totals_by_day(day, day) == {
        day: {"raw_lines": 8, "accepted": 7, "duplicates": 0, "quarantined": 1}
    }
    record(db, day, "ib-2", accepted=9)  # a new file set for the day: a new batch
    (current,) = db.days(day, day)
    assert current.batch_id == "ib-2"
    assert [f.accepted for f in db.files(day)] == [9]
    with db.engine.connect() as conn:
        batches = conn.execute(sa.text("SELECT count(*) FROM ingest_batch")).scalar()
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert batches == 2
    assert version == "0005"


def event(event_id: str, payload: str) -> dict[str, object]:
    import hashlib

    return {
        "event_id": event_id,
        "event_type": "InvoiceIssued",
        "schema_version": 1,
        "period": "2026-10",
        "correlation_id": "C-1:2026-10",
        "payload": payload,
        "payload_sha256": hashlib.sha256(payload.encode()).hexdigest(),
    }


def test_the_event_outbox_holds_each_event_once(db: ControlDb) -> None:
    assert db.enqueue_events([event("InvoiceIssued:A", "{}"), event("InvoiceIssued:B", "{}")]) == 2
    assert db.enqueue_events([event("InvoiceIssued:A", "{}")]) == 0  # a rerun: nothing new
    # Changed before delivery: the pending event is updated in place.
    assert db.enqueue_events([event("InvoiceIssued:A", '{"total":"2"}')]) == 1
    rows = {r["event_id"]: r for r in db.outbox("2026-10")}
    assert set(rows) == {"InvoiceIssued:A", "InvoiceIssued:B"}
    assert rows["InvoiceIssued:A"]["payload"] == '{"total":"2"}'
    # Changed after delivery: a new event follows, the delivered one stays as it was.
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE event_outbox SET state = 'confirmed'"))
    assert db.enqueue_events([event("InvoiceIssued:B", '{"total":"3"}')]) == 1
    assert db.enqueue_events([event("InvoiceIssued:B", '{"total":"3"}')]) == 0
    ids = sorted(r["event_id"] for r in db.outbox("2026-10"))
    assert ids[:2] == ["InvoiceIssued:A", "InvoiceIssued:B"] and ids[2].startswith(
        "InvoiceIssued:B#"
    )


def test_approvals_are_per_entity_and_renewed(db: ControlDb) -> None:
    db.approve("2026-10", "US01", "erin", "d1", 3, 10)
    db.approve("2026-10", "US01", "frank", "d2", 3, 11)
    approvals = db.approvals("2026-10")
    assert set(approvals) == {"US01"}
    assert approvals["US01"]["approved_by"] == "frank"
    assert approvals["US01"]["journals_digest"] == "d2"
