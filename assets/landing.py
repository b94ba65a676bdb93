"""The landing files: the pipeline's source, one partition per landing day.

Nothing here materialises them: they are uploaded by the product's telemetry exporters.
The landing sensor observes each day as files arrive (files, lines, bytes, last arrival),
and a freshness check fails when a day has nothing by its deadline the next morning.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import dagster as dg
from dagster_shared.utils.warnings import SupersessionWarning

from assets.owners import DATA_ENGINEERING
from dagster_project.partitions import landing_daily_partition
from dagster_project.settings import load_settings
from resources.landing import LandedDay

LANDING_FILES = "landing_files"

landing_files = dg.AssetSpec(
    LANDING_FILES,
    description="Usage telemetry as uploaded: NDJSON files (gzip or not), one folder a day.",
    group_name="ingest",
    kinds={"ndjson"},
    owners=[DATA_ENGINEERING],
    partitions_def=landing_daily_partition,
    metadata={"layout": "landing/usage/YYYY-MM-DD/*.ndjson[.gz]"},
)


def observation(landed: LandedDay) -> dg.AssetObservation:
    """What has landed for a day, as the landing sensor saw it."""
    metadata: dict[str, dg.RawMetadataValue] = {
        "files": landed.files,
        "lines": landed.lines,
        "bytes": landed.bytes,
        "signature": landed.signature,
    }
    if landed.last_arrival is not None:
        arrival = landed.last_arrival.timestamp()
        metadata["last_arrival"] = dg.MetadataValue.timestamp(arrival)
        # What Dagster's freshness checks read as the day's last update.
        metadata["dagster/last_updated_timestamp"] = dg.MetadataValue.timestamp(arrival)
    return dg.AssetObservation(
        asset_key=LANDING_FILES, partition=landed.day.isoformat(), metadata=metadata
    )


_settings = load_settings()
# A landing day is late when nothing has landed for it by this hour (UTC) the next day.
LANDING_DEADLINE_CRON = f"0 {_settings.landing_deadline_hour} * * *"

# Dagster's newer FreshnessPolicy supersedes these checks, but it ignores observations and
# partitions: it cannot say "landing day D has nothing by 06:00 on D+1". These can.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", category=SupersessionWarning)
    landing_freshness_checks: Sequence[dg.AssetChecksDefinition] = (
        dg.build_time_partition_freshness_checks(
            assets=[landing_files.key], deadline_cron=LANDING_DEADLINE_CRON, timezone="UTC"
        )
    )
    landing_freshness_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=landing_freshness_checks, name="landing_freshness_sensor"
    )
