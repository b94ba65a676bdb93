"""Usage: accepted events aggregated by usage day, customer, meter and group."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from assets.gates import check_result, failed_checks
from assets.ingest import USAGE_EVENTS
from assets.partition_days import partition_days
from checks import names
from checks.ingest import daily_usage_ties
from checks.outcome import markdown_table, validate_schema
from checks.schemas import DailyUsage
from dagster_project.partitions import usage_daily_partition
from rating import ingest as rating_ingest
from rating.usage import daily_usage as aggregate_daily_usage
from resources.reference import ReferenceDataResource
from resources.warehouse import WarehouseResource

DAILY_USAGE = "daily_usage"


@dg.asset(
    name=DAILY_USAGE,
    description="Usage per usage day, customer, meter and group, in exactly mergeable form.",
    group_name="ingest",
    kinds={"parquet", "duckdb"},
    deps=[USAGE_EVENTS],
    partitions_def=usage_daily_partition,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[
        dg.AssetCheckSpec(
            names.DAILY_USAGE_SCHEMA,
            asset=DAILY_USAGE,
            blocking=True,
            description="Columns, types and one row per day, customer, meter and group.",
        ),
        dg.AssetCheckSpec(
            names.DAILY_USAGE_TIES_TO_EVENTS,
            asset=DAILY_USAGE,
            blocking=True,
            description="Event counts and SUM/COUNT quantities equal those of usage_events.",
        ),
    ],
)
def daily_usage(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    reference: ReferenceDataResource,
) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]:
    store = warehouse.get()
    meters = rating_ingest.meters_table(reference.get().meters())
    schema_outcomes = []
    tie_outcomes = []
    rows = 0
    by_meter = []
    for day in partition_days(context):
        source = store.partition_path(USAGE_EVENTS, day)
        if not source.exists():
            raise FileNotFoundError(
                f"{source}: usage_events for landing day {day} is missing; "
                "materialize usage_events for that day first"
            )
        con = store.duckdb()
        try:
            table = aggregate_daily_usage(con, [source], meters)
        finally:
            con.close()
        frame = pl.from_arrow(table)
        events = pl.read_parquet(source, columns=["meter", "quantity"])
        assert isinstance(frame, pl.DataFrame)
        schema, ties = validate_schema(DailyUsage, frame), daily_usage_ties(events, frame)
        schema_outcomes.append((day, schema))
        tie_outcomes.append((day, ties))
        # Write, check, then commit: a day that fails its checks keeps its previous version.
        if schema.passed and ties.passed:
            store.write({DAILY_USAGE: (day, table)})
        rows += frame.height
        by_meter.append(
            frame.group_by("meter", "aggregation").agg(
                rows=pl.len(), events=pl.col("event_count").sum()
            )
        )
        context.log.info(f"daily usage for landing day {day}: {frame.height} rows")
    summary = (
        pl.concat(by_meter)
        .group_by("meter", "aggregation")
        .agg(pl.col("rows", "events").sum())
        .sort("meter")
    )
    asset_key = dg.AssetKey(DAILY_USAGE)
    checked = [
        check_result(names.DAILY_USAGE_SCHEMA, asset_key, schema_outcomes),
        check_result(names.DAILY_USAGE_TIES_TO_EVENTS, asset_key, tie_outcomes),
    ]
    yield from checked
    failed = failed_checks(checked)
    if failed:
        raise dg.Failure(
            description="daily_usage not written for the days that failed: " + "; ".join(failed),
            allow_retries=False,
        )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "by_meter": dg.MetadataValue.md(markdown_table(summary)),
            "path": dg.MetadataValue.path(str(store.table_dir(DAILY_USAGE))),
        }
    )
