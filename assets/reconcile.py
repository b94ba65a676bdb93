"""Reconciliation and the exception queue of a month's close."""

from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from assets.billing import BILLABLE_USAGE, landing_window
from assets.close import LANDING_CALENDAR
from assets.gates import check_result, commit_if_checks_pass, open_month
from assets.ingest import QUARANTINED_EVENTS
from assets.invoice import INVOICE_LINES, PREPAID_BALANCES, invoice_history
from assets.journals import JOURNAL_LINES
from assets.revenue import REVENUE_SCHEDULE
from assets.usage import DAILY_USAGE
from checks import names
from checks.journals import reconciliation_explained
from checks.outcome import markdown_table, validate_schema
from checks.schemas import Exceptions
from dagster_project.partitions import close_monthly_partition
from rating.periods import previous_period
from rating.reconcile import close_controls, landing_calendar_controls
from rating.revenue import REVENUE_SCHEMA
from rating.terms import reference_tables, terms_in_force
from resources.control_db import ControlDbResource
from resources.landing import IngestRulesResource
from resources.reference import ReferenceDataResource
from resources.warehouse import WarehouseResource

RECONCILIATION = "reconciliation"
EXCEPTIONS = "exceptions"

_LANDING_SCHEMA = pa.schema(
    [
        ("received_date", pa.date32()),
        ("raw_lines", pa.int64()),
        ("accepted", pa.int64()),
        ("duplicates", pa.int64()),
        ("quarantined", pa.int64()),
    ]
)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            RECONCILIATION,
            description="Per month, entity and control: expected, actual, variance, why.",
            group_name="close",
            kinds={"parquet", "duckdb"},
            deps=[
                LANDING_CALENDAR,
                JOURNAL_LINES,
                REVENUE_SCHEDULE,
                INVOICE_LINES,
                PREPAID_BALANCES,
                BILLABLE_USAGE,
                DAILY_USAGE,
                QUARANTINED_EVENTS,
            ],
            skippable=True,
        ),
        dg.AssetSpec(
            EXCEPTIONS,
            description="Business exceptions of the month, with the action each needs.",
            group_name="close",
            kinds={"parquet"},
            deps=[JOURNAL_LINES, QUARANTINED_EVENTS, DAILY_USAGE],
            skippable=True,
        ),
    ],
    partitions_def=close_monthly_partition,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    check_specs=[
        dg.AssetCheckSpec(
            names.RECONCILIATION_NO_UNEXPLAINED_VARIANCE,
            asset=RECONCILIATION,
            blocking=True,
            description="Every variance is zero or explained; an unexplained one stops publishing.",
        ),
        dg.AssetCheckSpec(
            names.EXCEPTIONS_SCHEMA,
            asset=EXCEPTIONS,
            blocking=True,
            description="Columns, severities and stable exception ids.",
        ),
    ],
)
def reconciliation(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    reference: ReferenceDataResource,
    control_db: ControlDbResource,
    ingest_rules: IngestRulesResource,
) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]:
    month = open_month(context, control_db)
    if month is None:
        return
    period, first, last = month.period, month.first, month.last
    store = warehouse.get()
    db = control_db.get()
    try:
        totals = db.totals_by_day(first, last)
    finally:
        db.dispose()
    landing = pa.Table.from_pylist(
        [{"received_date": day, **counts} for day, counts in sorted(totals.items())],
        schema=_LANDING_SCHEMA,
    )
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    quarantine_files = store.existing(QUARANTINED_EVENTS, days)
    quarantined = (
        pq.read_table(
            [str(p) for p in quarantine_files], columns=["received_date", "reason", "customer_id"]
        )
        if quarantine_files
        else pa.table(
            {
                "received_date": pa.array([], pa.date32()),
                "reason": pa.array([], pa.string()),
                "customer_id": pa.array([], pa.string()),
            }
        )
    )
    window_first, window_last = landing_window(first, last, ingest_rules.get())
    window = [
        window_first + timedelta(days=n) for n in range((window_last - window_first).days + 1)
    ]
    daily_files = store.existing(DAILY_USAGE, window)
    daily = (
        pl.scan_parquet(daily_files)
        .filter(pl.col("usage_date").is_between(first, last))
        .select("customer_id", "meter", "usage_date", "event_count")
        .collect()
        .to_arrow()
        if daily_files
        else pa.table(
            {
                "customer_id": pa.array([], pa.string()),
                "meter": pa.array([], pa.string()),
                "usage_date": pa.array([], pa.date32()),
                "event_count": pa.array([], pa.int64()),
            }
        )
    )
    before_path = store.partition_path(REVENUE_SCHEDULE, previous_period(period))
    schedule_before = (
        pq.read_table(before_path) if before_path.exists() else REVENUE_SCHEMA.empty_table()
    )
    ref = reference.get()
    plans = ref.plans()
    contracts = ref.contracts(plans)
    con = store.duckdb()
    try:
        terms_in_force(con, reference_tables(plans, contracts), first, last)
        table, queue = close_controls(
            con,
            period=period,
            month_start=first,
            month_end=last,
            landing=landing,
            quarantined=quarantined,
            daily=daily,
            customers=ref.customers().select("customer_id", "entity_id").to_arrow(),
            billable=pq.read_table(store.partition_path(BILLABLE_USAGE, period)),
            invoices=invoice_history(store, period),
            schedule=pq.read_table(store.partition_path(REVENUE_SCHEDULE, period)),
            schedule_before=schedule_before,
            journals=pq.read_table(store.partition_path(JOURNAL_LINES, period)),
            prepaid=pq.read_table(store.partition_path(PREPAID_BALANCES, period)),
        )
    finally:
        con.close()
    # The landing calendar's control: days a controller confirmed complete as they stood.
    calendar_path = store.partition_path(LANDING_CALENDAR, period)
    if calendar_path.exists():
        control, confirmed = landing_calendar_controls(period, pq.read_table(calendar_path))
        table = pa.concat_tables([control, table])
        queue = pa.concat_tables([queue, confirmed])
    frame = pl.from_arrow(table)
    exceptions = pl.from_arrow(queue)
    assert isinstance(frame, pl.DataFrame) and isinstance(exceptions, pl.DataFrame)
    # The reconciliation and its exceptions are written even when a control does not tie:
    # they are how a controller finds out why. The step still fails, so nothing downstream
    # (exports, events, publication) runs on the month.
    yield from commit_if_checks_pass(
        store,
        {},
        [
            check_result(
                names.RECONCILIATION_NO_UNEXPLAINED_VARIANCE,
                dg.AssetKey(RECONCILIATION),
                [(first, reconciliation_explained(frame))],
            ),
            check_result(
                names.EXCEPTIONS_SCHEMA,
                dg.AssetKey(EXCEPTIONS),
                [(first, validate_schema(Exceptions, exceptions))],
            ),
        ],
        reports={RECONCILIATION: (period, table), EXCEPTIONS: (period, queue)},
    )
    by_status = frame.group_by("status").len().sort("status")
    by_kind = exceptions.group_by("severity", "kind").agg(cases=pl.len()).sort("severity", "kind")
    yield dg.MaterializeResult(
        asset_key=RECONCILIATION,
        metadata={
            "period": period,
            "dagster/row_count": frame.height,
            "by_status": dg.MetadataValue.md(markdown_table(by_status)),
            "controls": dg.MetadataValue.md(
                markdown_table(
                    frame.select("entity_id", "currency", "control", "variance", "status"),
                    limit=60,
                )
            ),
            "path": dg.MetadataValue.path(str(store.partition_path(RECONCILIATION, period))),
        },
    )
    yield dg.MaterializeResult(
        asset_key=EXCEPTIONS,
        metadata={
            "period": period,
            "dagster/row_count": exceptions.height,
            "by_kind": dg.MetadataValue.md(markdown_table(by_kind)),
            "queue": dg.MetadataValue.md(
                markdown_table(exceptions.select("severity", "kind", "entity_id", "reason"))
            ),
            "path": dg.MetadataValue.path(str(store.partition_path(EXCEPTIONS, period))),
        },
    )
