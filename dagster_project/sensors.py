"""Sensors: new landing files, and landing days whose deduplication window changed."""

from datetime import date

import dagster as dg

from dagster_project.jobs import ingest_job
from dagster_project.partitions import usage_daily_partition
from rating.ingest import IngestRules
from resources.control_db import ControlDbResource, window_digest
from resources.landing import IngestRulesResource, LandingResource

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@dg.sensor(job=ingest_job, minimum_interval_seconds=60)
def landing_files_sensor(
    context: dg.SensorEvaluationContext, landing: LandingResource, control_db: ControlDbResource
) -> dg.SensorResult:
    """Requests an ingest of every landing day whose files differ from what was ingested."""
    db = control_db.get()
    recorded = {r.received_date: r.landing_signature for r in db.days()}
    db.dispose()
    area = landing.get()
    keys = set(usage_daily_partition.get_partition_keys())
    requests = []
    for day in area.days():
        signature = area.signature(day)
        if recorded.get(day) == signature or day.isoformat() not in keys:
            continue
        requests.append(
            dg.RunRequest(partition_key=day.isoformat(), run_key=f"landing:{day}:{signature}")
        )
    if not requests:
        return dg.SensorResult(skip_reason="no new or changed landing files")
    return dg.SensorResult(run_requests=requests)


def stale_days(records: list[tuple[date, str, str]], rules: IngestRules) -> list[date]:
    """Days whose deduplication window now holds different accepted events than it did.

    ``records`` are (landing day, accepted-keys digest, window digest at ingest).
    """
    digests = {day: keys for day, keys, _ in records}
    stale = []
    for day, _keys, recorded_window in records:
        first, last = rules.dedup_window(day)
        current = window_digest((d, k) for d, k in digests.items() if first <= d <= last)
        if current != recorded_window:
            stale.append(day)
    return stale


@dg.sensor(job=ingest_job, minimum_interval_seconds=60)
def stale_dedup_window_sensor(
    context: dg.SensorEvaluationContext,
    control_db: ControlDbResource,
    ingest_rules: IngestRulesResource,
) -> dg.SensorResult:
    """Re-ingests the days after a re-ingested day, so no event is ever accepted twice.

    One run walks from the earliest stale day to the latest ingested day in order: each
    re-ingest may change the next day's window, so the days must go one after another.
    """
    db = control_db.get()
    records = [(r.received_date, r.accepted_keys_digest, r.window_digest) for r in db.days()]
    db.dispose()
    stale = stale_days(records, ingest_rules.get())
    if not stale:
        return dg.SensorResult(skip_reason="every ingested day saw its current window")
    start, end = stale[0].isoformat(), records[-1][0].isoformat()
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"stale:{start}:{end}:{len(stale)}",
                tags={RANGE_START: start, RANGE_END: end},
            )
        ]
    )
