"""Sensors: new landing files, and landing days whose deduplication window changed."""

import hashlib

import dagster as dg

from assets.ingest import stale_landing_days
from dagster_project.jobs import ingest_job
from dagster_project.partitions import usage_daily_partition
from resources.control_db import ControlDbResource
from resources.landing import IngestRulesResource, LandingResource
from resources.warehouse import WarehouseResource

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _ingest_running(context: dg.SensorEvaluationContext) -> bool:
    """Whether an ingest run is queued or under way: its days are not final yet."""
    runs = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=ingest_job.name, statuses=_ACTIVE), limit=1
    )
    return bool(runs)


def _range_request(kind: str, days: list[str], fingerprint: str) -> dg.RunRequest:
    """One run over a range of landing days, walked in order (single-run backfill)."""
    key = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    return dg.RunRequest(
        run_key=f"{kind}:{days[0]}:{days[-1]}:{key}",
        tags={RANGE_START: days[0], RANGE_END: days[-1]},
    )


@dg.sensor(job=ingest_job, minimum_interval_seconds=60)
def landing_files_sensor(
    context: dg.SensorEvaluationContext, landing: LandingResource, control_db: ControlDbResource
) -> dg.SensorResult:
    """Requests an ingest of the landing days whose files differ from what was ingested.

    Changed days go in one run, oldest first, because each day's deduplication reads the
    days before it.
    """
    if _ingest_running(context):
        return dg.SensorResult(skip_reason="an ingest run is in progress")
    db = control_db.get()
    recorded = {r.received_date: r.landing_signature for r in db.days()}
    db.dispose()
    area = landing.get()
    keys = set(usage_daily_partition.get_partition_keys())
    changed = []
    for day in area.days():
        signature = area.signature(day)
        if recorded.get(day) != signature and day.isoformat() in keys:
            changed.append((day.isoformat(), signature))
    if not changed:
        return dg.SensorResult(skip_reason="no new or changed landing files")
    days = [d for d, _ in changed]
    return dg.SensorResult(run_requests=[_range_request("landing", days, repr(changed))])


@dg.sensor(job=ingest_job, minimum_interval_seconds=60)
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
