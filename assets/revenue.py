"""Revenue: what each invoice line earns month by month (revenue_schedule)."""

from collections.abc import Iterator

import dagster as dg
import polars as pl
import pyarrow.parquet as pq

from assets.gates import check_result, commit_if_checks_pass, open_month
from assets.invoice import INVOICE_LINES, PREPAID_BALANCES, invoice_history
from checks import names
from checks.outcome import markdown_table, validate_schema
from checks.schemas import RevenueSchedule
from dagster_project.partitions import close_monthly_partition
from rating.revenue import revenue_schedule as schedule_month
from resources.control_db import ControlDbResource
from resources.warehouse import WarehouseResource

REVENUE_SCHEDULE = "revenue_schedule"


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            REVENUE_SCHEDULE,
            description="Revenue recognised per obligation and month, and what stays deferred.",
            group_name="close",
            kinds={"parquet", "duckdb"},
            deps=[INVOICE_LINES, PREPAID_BALANCES],
            skippable=True,
        )
    ],
    partitions_def=close_monthly_partition,
    can_subset=True,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    check_specs=[
        dg.AssetCheckSpec(
            names.REVENUE_SCHEDULE_SCHEMA,
            asset=REVENUE_SCHEDULE,
            blocking=True,
            description="Recognised + deferred = the line; ended lines fully recognised.",
        )
    ],
)
def revenue_schedule(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    control_db: ControlDbResource,
) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]:
    month = open_month(context, control_db)
    if month is None:
        return
    period, first, last = month.period, month.first, month.last
    store = warehouse.get()
    history = invoice_history(store, period)
    prepaid = pq.read_table(store.partition_path(PREPAID_BALANCES, period))
    con = store.duckdb()
    try:
        table = schedule_month(con, history, prepaid, period, first, last)
    finally:
        con.close()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    key = dg.AssetKey(REVENUE_SCHEDULE)
    yield from commit_if_checks_pass(
        store,
        {REVENUE_SCHEDULE: (period, table)},
        [
            check_result(
                names.REVENUE_SCHEDULE_SCHEMA,
                key,
                [(first, validate_schema(RevenueSchedule, frame))],
            )
        ],
    )
    totals = (
        frame.group_by("entity_id", "currency", "pattern")
        .agg(
            obligations=pl.len(),
            recognized=pl.col("recognized").sum(),
            deferred=pl.col("deferred_balance").sum(),
        )
        .sort("entity_id", "currency", "pattern")
    )
    yield dg.MaterializeResult(
        asset_key=key,
        metadata={
            "period": period,
            "dagster/row_count": frame.height,
            "recognized_and_deferred": dg.MetadataValue.md(markdown_table(totals, limit=40)),
            "path": dg.MetadataValue.path(str(store.partition_path(REVENUE_SCHEDULE, period))),
        },
    )
