"""Sensors: new landing files trigger an ingest; a re-ingested day makes later days stale."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from assets.ingest import ingest_landing_day
from dagster_project.sensors import (
    RANGE_END,
    RANGE_START,
    landing_files_sensor,
    stale_dedup_window_sensor,
)
from tests.conftest import LandFn, event

DAY1, DAY2, DAY3 = date(2026, 9, 1), date(2026, 9, 2), date(2026, 9, 3)


def ingest(resources: dict[str, object], day: date) -> None:
    dg.materialize([ingest_landing_day], partition_key=day.isoformat(), resources=resources)


def evaluate(sensor: dg.SensorDefinition, resources: dict[str, object]) -> dg.SensorResult:
    with dg.build_sensor_context(
        resources=resources, instance=dg.DagsterInstance.ephemeral()
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_landing_sensor_requests_new_and_changed_days_only(
    land: LandFn, resources: dict[str, object]
) -> None:
    land(DAY1, "a.ndjson", [event("e1", time="2026-09-01T08:00:00Z")])
    land(DAY2, "a.ndjson", [event("e2", time="2026-09-02T08:00:00Z")])
    requests = evaluate(landing_files_sensor, resources).run_requests or []
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in requests] == [
        ("2026-09-01", "2026-09-02")
    ]

    ingest(resources, DAY1)
    ingest(resources, DAY2)
    assert evaluate(landing_files_sensor, resources).run_requests in (None, [])

    land(DAY2, "b.ndjson", [event("e3", time="2026-09-02T09:00:00Z")])
    requests = evaluate(landing_files_sensor, resources).run_requests or []
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in requests] == [
        ("2026-09-02", "2026-09-02")
    ]

    # A file corrected in place (same name, same size) is noticed too.
    path = land(DAY1, "a.ndjson", [event("e1", time="2026-09-01T08:00:01Z")])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    requests = evaluate(landing_files_sensor, resources).run_requests or []
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in requests] == [
        ("2026-09-01", "2026-09-02")
    ]


def test_reingesting_a_day_makes_the_following_days_stale(
    land: LandFn, resources: dict[str, object], data_dir: Path
) -> None:
    # e1 first lands on day 1 from a customer the reference data does not know yet, and
    # again (re-sent) on day 2. Both copies are quarantined.
    copy = event("e1", subject="CUST-0003", time="2026-09-01T08:00:00Z")
    land(DAY1, "a.ndjson", [copy])
    land(DAY2, "a.ndjson", [copy])
    land(DAY3, "a.ndjson", [event("e9", time="2026-09-03T08:00:00Z")])
    for day in (DAY1, DAY2, DAY3):
        ingest(resources, day)
    assert evaluate(stale_dedup_window_sensor, resources).run_requests in (None, [])

    # The customer is added and day 1 re-ingested: its copy of e1 is now accepted, so
    # day 2's copy must become a duplicate — days 2 and 3 saw a window that changed.
    with (data_dir / "reference/customers.csv").open("a") as f:
        f.write("CUST-0003,Initech,US01,USD,US\n")
    ingest(resources, DAY1)
    requests = evaluate(stale_dedup_window_sensor, resources).run_requests or []
    assert len(requests) == 1
    assert (requests[0].tags[RANGE_START], requests[0].tags[RANGE_END]) == (
        "2026-09-02",
        "2026-09-03",
    )

    dg.materialize(
        [ingest_landing_day],
        resources=resources,
        tags={RANGE_START: "2026-09-02", RANGE_END: "2026-09-03"},
    )
    assert evaluate(stale_dedup_window_sensor, resources).run_requests in (None, [])
    warehouse = data_dir / "warehouse"
    day2_duplicates = pl.read_parquet(warehouse / "duplicate_events" / "2026-09-02.parquet")
    assert day2_duplicates.select("event_id", "first_received_date").rows() == [("e1", DAY1)]
    assert pl.read_parquet(warehouse / "quarantined_events" / "2026-09-02.parquet").height == 0


def test_a_day_interrupted_while_writing_is_stale(
    land: LandFn, resources: dict[str, object], data_dir: Path
) -> None:
    from resources.control_db import ControlDb

    land(DAY1, "a.ndjson", [event("e1", time="2026-09-01T08:00:00Z")])
    ingest(resources, DAY1)
    db = ControlDb(f"sqlite:///{data_dir / 'control.db'}")
    db.mark_writing(DAY1, "crashed-run")  # as if the process died between the renames
    db.dispose()
    requests = evaluate(stale_dedup_window_sensor, resources).run_requests or []
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in requests] == [
        ("2026-09-01", "2026-09-01")
    ]
