"""The code location: every asset, check, job, schedule, sensor and resource, assembled."""

import dagster as dg

from assets.billing import billable_usage
from assets.close import close_record, landing_calendar
from assets.events import business_events
from assets.exports import erp_exports
from assets.ingest import ingest_landing_day
from assets.invoice import invoice_lines
from assets.journals import journal_lines
from assets.landing import landing_files, landing_freshness_checks, landing_freshness_sensor
from assets.publish import erp_publication
from assets.reconcile import reconciliation
from assets.restatement import request_reprocessing
from assets.revenue import revenue_schedule
from assets.usage import daily_usage
from dagster_project.jobs import (
    approve_job,
    close_job,
    confirm_day_job,
    deliver_events_job,
    ingest_job,
    lock_job,
    publish_job,
    reprocess_job,
)
from dagster_project.resources import build_resources
from dagster_project.schedules import month_end_close_schedule, nightly_ingest_schedule
from dagster_project.sensors import landing_files_sensor, stale_dedup_window_sensor
from dagster_project.settings import Settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """The same definitions for `dagster dev` and the CLI; only the settings differ."""
    return dg.Definitions(
        assets=[
            landing_files,
            ingest_landing_day,
            daily_usage,
            landing_calendar,
            billable_usage,
            invoice_lines,
            revenue_schedule,
            journal_lines,
            reconciliation,
            erp_exports,
            business_events,
            erp_publication,
            close_record,
            request_reprocessing,
        ],
        jobs=[
            ingest_job,
            close_job,
            approve_job,
            publish_job,
            lock_job,
            confirm_day_job,
            deliver_events_job,
            reprocess_job,
        ],
        schedules=[nightly_ingest_schedule, month_end_close_schedule],
        asset_checks=landing_freshness_checks,
        sensors=[landing_files_sensor, stale_dedup_window_sensor, landing_freshness_sensor],
        resources=build_resources(settings),
    )


defs = build_definitions()
