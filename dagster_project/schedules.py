"""Schedules: nightly ingest of the landing day that just ended."""

from datetime import timedelta

import dagster as dg

from dagster_project.jobs import ingest_job


# 02:00 UTC: yesterday's landing day is complete and most late uploads of the night are in.
# The daily partitions reach today (files land all day), so the target is named explicitly.
@dg.schedule(
    cron_schedule="0 2 * * *",
    job=ingest_job,
    execution_timezone="UTC",
    name="nightly_ingest_schedule",
    description="Ingest yesterday's landing day every night at 02:00 UTC.",
)
def nightly_ingest_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"nightly:{yesterday}", partition_key=yesterday)
