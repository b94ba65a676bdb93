"""Sensors: new landing files, and landing days whose deduplication window changed."""

import hashlib
import json
from datetime import date

import dagster as dg

from assets.ingest import stale_landing_days
from assets.landing import observation
from dagster_project.jobs import ACTIVE_RUN_STATUSES, ingest_job
from dagster_project.partitions import landing_daily_partition, usage_daily_partition
from resources.control_db import ControlDbResource
from resources.landing import IngestRulesResource, LandingResource
from resources.warehouse import WarehouseResource

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _ingest_running(context: dg.SensorEvaluationContext) -> bool:
    """Whether an ingest run is queued or under way: its days are not final yet."""
    runs = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=ingest_job.name, statuses=ACTIVE_RUN_STATUSES), limit=1
    )
    return bool(runs)


def _range_request(kind: str, days: list[str], fingerprint: str) -> dg.RunRequest:
    """One run over a range of landing days, walked in order (single-run backfill)."""
    key = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    return dg.RunRequest(
        run_key=f"{kind}:{days[0]}:{days[-1]}:{key}",
        tags={RANGE_START: days[0], RANGE_END: days[-1]},
    )


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=60,
    description=(
        "Watches the landing area. Observes each ended landing day on landing_files (files, "
        "lines, bytes, last arrival) when its files change, and requests one ingest run over "
        "every day whose files differ from what was ingested, oldest first. Safe to turn on: "
        "it never runs while an ingest is under way, and a state is requested once."
    ),
)
def landing_files_sensor(
    context: dg.SensorEvaluationContext, landing: LandingResource, control_db: ControlDbResource
) -> dg.SensorResult:
    """Changed days go in one run, oldest first, because each day's deduplication reads the
    days before it."""
    area = landing.get()
    # The cursor holds the signature each landing day was last observed with.
    observed: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    ended = set(landing_daily_partition.get_partition_keys())
    signatures = {day.isoformat(): area.signature(day) for day in area.days()}
    observations = [
        observation(area.landed(date.fromisoformat(day)))
        for day, signature in signatures.items()
        if day in ended and observed.get(day) != signature
    ]
    cursor = json.dumps(
        {**observed, **{o.partition: signatures[str(o.partition)] for o in observations}},
        sort_keys=True,
    )
    if _ingest_running(context):
        return dg.SensorResult(
            skip_reason="an ingest run is in progress", asset_events=observations, cursor=cursor
        )
    db = control_db.get()
    recorded = {r.received_date.isoformat(): r.landing_signature for r in db.days()}
    db.dispose()
    keys = set(usage_daily_partition.get_partition_keys())
    changed = [
        (day, signature)
        for day, signature in signatures.items()
        if recorded.get(day) != signature and day in keys
    ]
    if not changed:
        return dg.SensorResult(
            skip_reason="no new or changed landing files", asset_events=observations, cursor=cursor
        )
    days = [d for d, _ in changed]
    return dg.SensorResult(
        run_requests=[_range_request("landing", days, repr(changed))],
        asset_events=observations,
        cursor=cursor,
    )


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=60,
    description=(
        "After a landing day is re-ingested, re-ingests the days after it whose deduplication "
        "window changed, so no event is ever accepted twice. Safe to turn on: it never runs "
        "while an ingest is under way, and a stale state is requested once."
    ),
)
def stale_dedup_window_sensor(
    context: dg.SensorEvaluationContext,
    warehouse: WarehouseResource,
    control_db: ControlDbResource,
    ingest_rules: IngestRulesResource,
) -> dg.SensorResult:
    """Re-ingests the days after a re-ingested day, so no event is ever accepted twice.

    One run walks from the earliest stale day to the latest ingested day in order: each
    re-ingest may change the next day's window, so the days must go one after another.
    """
    if _ingest_running(context):
        return dg.SensorResult(skip_reason="an ingest run is in progress")
    db = control_db.get()
    stale = stale_landing_days(warehouse.get(), db, ingest_rules.get())
    records = db.days()
    db.dispose()
    if not stale:
        return dg.SensorResult(skip_reason="every ingested day saw its current window")
    days = [stale[0].isoformat(), records[-1].received_date.isoformat()]
    # The key names the stale state itself: a state is requested once (a run that fails on
    # it is for a person to look at), and any new state gets a new request.
    fingerprint = repr([(r.received_date, r.window_digest, r.status) for r in records])
    return dg.SensorResult(run_requests=[_range_request("stale", days, fingerprint)])
