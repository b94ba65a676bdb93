"""Schedules: nightly ingest of the landing day that just ended; the month-end close."""

import os
from datetime import timedelta

import dagster as dg

from dagster_project.jobs import close_job, ingest_job


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


def _close_day() -> int:
    """METERCLOSE_CLOSE_DAY: the day of the month the previous month is closed (1–28)."""
    raw = os.environ.get("METERCLOSE_CLOSE_DAY") or "5"
    if not raw.isdigit() or not 1 <= int(raw) <= 28:
        raise ValueError(f"environment variable METERCLOSE_CLOSE_DAY={raw!r}: expected 1 to 28")
    return int(raw)


CLOSE_DAY = _close_day()


# After a grace window for late data (the first days of the month), the previous month is
# closed: rated, invoiced, scheduled, booked and reconciled. Locking is left to a controller
# who has read the reconciliation (`meterclose lock`), as approval is in any finance team.
@dg.schedule(
    cron_schedule=f"0 6 {CLOSE_DAY} * *",
    job=close_job,
    execution_timezone="UTC",
    name="month_end_close_schedule",
    description=(
        f"Close the previous month on day {CLOSE_DAY} of the next, at 06:00 UTC, after a "
        "grace window for late data (METERCLOSE_CLOSE_DAY)."
    ),
)
def month_end_close_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    first_of_this_month = context.scheduled_execution_time.date().replace(day=1)
    previous = (first_of_this_month - timedelta(days=1)).replace(day=1).isoformat()
    return dg.RunRequest(run_key=f"close:{previous}", partition_key=previous)
