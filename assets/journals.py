"""Journals: the month's balanced double entries per entity, currency and category."""

from collections.abc import Iterator

import dagster as dg
import polars as pl
import pyarrow.parquet as pq

from assets.gates import check_result, commit_if_checks_pass, open_month
from assets.invoice import INVOICE_LINES, invoice_history
from assets.revenue import REVENUE_SCHEDULE
from checks import names
from checks.journals import journals_balance, lines_mapped
from checks.outcome import markdown_table, validate_schema
from checks.schemas import JournalLines
from dagster_project.partitions import close_monthly_partition
from dagster_project.settings import SettingsResource
from rating.journals import journal_lines as book_month
from resources.control_db import ControlDbResource
from resources.reference import ReferenceDataResource
from resources.warehouse import WarehouseResource

JOURNAL_LINES = "journal_lines"


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            JOURNAL_LINES,
            description=(
                "Balanced journal lines per entity, accounting period, currency and category."
            ),
            group_name="close",
            kinds={"parquet", "duckdb"},
            deps=[
                REVENUE_SCHEDULE,
                # The month's journals reverse the previous month's accrual and book its
                # usage invoices, dated the first day of this month.
                dg.AssetDep(
                    INVOICE_LINES,
                    partition_mapping=dg.TimeWindowPartitionMapping(
                        start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True
                    ),
                ),
            ],
            skippable=True,
        )
    ],
    partitions_def=close_monthly_partition,
    can_subset=True,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    check_specs=[
        dg.AssetCheckSpec(
            names.JOURNAL_LINES_SCHEMA,
            asset=JOURNAL_LINES,
            blocking=True,
            description="Columns, one side per line, unique line numbers per journal.",
        ),
        dg.AssetCheckSpec(
            names.JOURNALS_BALANCE,
            asset=JOURNAL_LINES,
            blocking=True,
            description="Every journal balances in transaction and functional currency.",
        ),
        dg.AssetCheckSpec(
            names.JOURNAL_LINES_MAPPED,
            asset=JOURNAL_LINES,
            blocking=True,
            description="Every line has an account and, but rounding, an FX rate.",
        ),
    ],
)
def journal_lines(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    reference: ReferenceDataResource,
    control_db: ControlDbResource,
    settings: SettingsResource,
) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]:
    month = open_month(context, control_db)
    if month is None:
        return
    period, first, last = month.period, month.first, month.last
    store = warehouse.get()
    history = invoice_history(store, period)
    schedule = pq.read_table(store.partition_path(REVENUE_SCHEDULE, period))
    ref = reference.get()
    con = store.duckdb()
    try:
        table = book_month(
            con,
            history,
            schedule,
            ref.entities(),
            ref.accounts(),
            ref.products().to_arrow(),
            ref.fx_rates(),
            period,
            first,
            last,
            fx_max_age_days=settings.get().fx_fallback_max_age_days,
        )
    finally:
        con.close()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    key = dg.AssetKey(JOURNAL_LINES)
    yield from commit_if_checks_pass(
        store,
        {JOURNAL_LINES: (period, table)},
        [
            check_result(
                names.JOURNAL_LINES_SCHEMA, key, [(first, validate_schema(JournalLines, frame))]
            ),
            check_result(names.JOURNALS_BALANCE, key, [(first, journals_balance(frame))]),
            check_result(names.JOURNAL_LINES_MAPPED, key, [(first, lines_mapped(frame))]),
        ],
    )
    journals = (
        frame.group_by("entity_id", "currency", "category", "journal_id")
        .agg(
            lines=pl.len(),
            debit=pl.col("debit").sum(),
            functional_debit=pl.col("functional_debit").sum(),
        )
        .sort("journal_id")
    )
    context.log.info(f"booked {period}: {journals.height} journals, {frame.height} lines")
    yield dg.MaterializeResult(
        asset_key=key,
        metadata={
            "period": period,
            "dagster/row_count": frame.height,
            "journals": journals.height,
            "journal_totals": dg.MetadataValue.md(markdown_table(journals, limit=60)),
            "path": dg.MetadataValue.path(str(store.partition_path(JOURNAL_LINES, period))),
        },
    )
