"""The code location: every asset, check, job, schedule, sensor and resource, assembled."""

from __future__ import annotations

import dagster as dg

from assets.ingest import ingest_landing_day
from assets.usage import daily_usage
from dagster_project.jobs import ingest_job
from dagster_project.resources import build_resources
from dagster_project.schedules import nightly_ingest_schedule
from dagster_project.sensors import landing_files_sensor, stale_dedup_window_sensor

defs = dg.Definitions(
    assets=[ingest_landing_day, daily_usage],
    jobs=[ingest_job],
    schedules=[nightly_ingest_schedule],
    sensors=[landing_files_sensor, stale_dedup_window_sensor],
    resources=build_resources(),
)
