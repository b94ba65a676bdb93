"""Schedules: nightly ingest of the landing day that just ended; the month-end close."""

from datetime import timedelta

import dagster as dg

from dagster_project.jobs import close_job, ingest_job
from dagster_project.settings import load_settings
from rating.periods import period_of, previous_period


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


_settings = load_settings()
CLOSE_DAY = _settings.close_day


# After a grace window for late data (the first days of the month), the previous month is
# prepared: rated, invoiced, scheduled, booked and reconciled. Approval, publication and the
# lock are left to people who have read the reconciliation (approve_job, publish_job and
# lock_job in the UI, or the CLI), as in any finance team.
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
    previous = previous_period(period_of(context.scheduled_execution_time.date()))
    # The schedule prepares the close under a configured system name, so a person can
    # approve it (segregation of duties); an incomplete month is refused by its first step.
    preparer = {"prepared_by": _settings.schedule_preparer}
    return dg.RunRequest(
        run_key=f"close:{previous}",
        partition_key=previous,
        run_config={"ops": {"landing_calendar": {"config": preparer}}},
    )
