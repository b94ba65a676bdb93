"""Revenue: what each invoice line earns month by month (revenue_schedule)."""

from collections.abc import Iterator

import dagster as dg
import polars as pl
import pyarrow.parquet as pq

from assets.billing import month_bounds
from assets.ingest import check_result
from assets.invoice import INVOICE_LINES, PREPAID_BALANCES, invoice_history
from checks import names
from checks.outcome import markdown_table, validate_schema
from checks.schemas import RevenueSchedule
from dagster_project.partitions import close_monthly_partition
from rating.revenue import revenue_schedule as schedule_month
from resources.control_db import ControlDbResource
from resources.warehouse import WarehouseResource

REVENUE_SCHEDULE = "revenue_schedule"


@dg.asset(
    name=REVENUE_SCHEDULE,
    description="Revenue recognised per obligation and month, and what stays deferred.",
    group_name="close",
    kinds={"parquet", "duckdb"},
    deps=[INVOICE_LINES, PREPAID_BALANCES],
    partitions_def=close_monthly_partition,
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
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    period = context.partition_key[:7]
    control_db.refuse_if_locked(period)
    first, last = month_bounds(period)
    store = warehouse.get()
    history = invoice_history(store, period)
    prepaid = pq.read_table(store.partition_path(PREPAID_BALANCES, period))
    con = store.duckdb()
    try:
        table = schedule_month(con, history, prepaid, period, first, last)
    finally:
        con.close()
    store.write({REVENUE_SCHEDULE: (period, table)})
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
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
        metadata={
            "period": period,
            "dagster/row_count": frame.height,
            "recognized_and_deferred": dg.MetadataValue.md(markdown_table(totals, limit=40)),
            "path": dg.MetadataValue.path(str(store.partition_path(REVENUE_SCHEDULE, period))),
        }
    )
    yield check_result(
        names.REVENUE_SCHEDULE_SCHEMA,
        dg.AssetKey(REVENUE_SCHEDULE),
        [(first, validate_schema(RevenueSchedule, frame))],
    )
