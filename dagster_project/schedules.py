"""Schedules: nightly ingest of the landing day that just ended."""

from __future__ import annotations

import dagster as dg

from dagster_project.jobs import ingest_job

# 02:00 UTC: yesterday's landing day is complete, and most late uploads of the night are in.
# The schedule targets the latest complete partition, i.e. yesterday.
nightly_ingest_schedule = dg.build_schedule_from_partitioned_job(
    ingest_job,
    name="nightly_ingest_schedule",
    hour_of_day=2,
    minute_of_hour=0,
    description="Ingest yesterday's landing day every night at 02:00 UTC.",
)
