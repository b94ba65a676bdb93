"""Invoicing: a month's invoices and credit memos (invoice_lines), and the prepaid credit
balances they draw on (prepaid_balances)."""

from collections.abc import Iterator

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from assets.billing import BILLABLE_USAGE, landing_window, month_usage_files
from assets.gates import check_result, commit_if_checks_pass, open_month
from checks import names
from checks.invoice import invoice_ties_to_billable_usage, prepaid_ties
from checks.outcome import markdown_table, validate_schema
from checks.schemas import INVOICE_KINDS, InvoiceLines, PrepaidBalances
from dagster_project.partitions import close_monthly_partition
from rating import ingest as rating_ingest
from rating.billing import billable_usage as rate_month
from rating.ingest import IngestRules
from rating.invoice import invoice_lines as issue_invoices
from rating.invoice import prior_period_adjustments
from rating.periods import month_bounds, previous_period
from rating.terms import reference_tables, terms_in_force
from resources.control_db import ControlDb, ControlDbResource
from resources.landing import IngestRulesResource, Landing, LandingResource
from resources.reference import ReferenceData, ReferenceDataResource
from resources.warehouse import Warehouse, WarehouseResource

INVOICE_LINES = "invoice_lines"
PREPAID_BALANCES = "prepaid_balances"


def previous_balances(store: Warehouse, period: str) -> pl.DataFrame | None:
    """Last month's prepaid balances; None when no month has been invoiced before this one
    (the balances granted in contracts.yaml are the opening ones). A gap is refused: a
    balance carried over a month never closed would be wrong."""
    before = previous_period(period)
    path = store.partition_path(PREPAID_BALANCES, before)
    if path.exists():
        frame = pl.read_parquet(path)
        return frame
    earlier = [p for p in store.partitions(PREPAID_BALANCES) if p < before]
    if earlier:
        raise RuntimeError(
            f"prepaid_balances for {before} is missing, but {earlier[-1]} exists: "
            f"materialize invoice_lines for {before} first (balances carry month to month)"
        )
    return None


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            INVOICE_LINES,
            description="Invoice and credit memo lines per month, with deterministic ids.",
            group_name="billing",
            kinds={"parquet", "duckdb"},
            deps=[BILLABLE_USAGE],
            skippable=True,
        ),
        dg.AssetSpec(
            PREPAID_BALANCES,
            description="Prepaid credit per contract and month: opening, drawn, expired, closing.",
            group_name="billing",
            kinds={"parquet"},
            deps=[
                BILLABLE_USAGE,
                dg.AssetDep(
                    PREPAID_BALANCES,
                    partition_mapping=dg.TimeWindowPartitionMapping(
                        start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
                    ),
                ),
            ],
            skippable=True,
        ),
    ],
    partitions_def=close_monthly_partition,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    check_specs=[
        dg.AssetCheckSpec(
            names.INVOICE_LINES_SCHEMA,
            asset=INVOICE_LINES,
            blocking=True,
            description="Columns, unique line ids inside their invoices, signs by kind.",
        ),
        dg.AssetCheckSpec(
            names.INVOICE_LINES_TIE_TO_BILLABLE_USAGE,
            asset=INVOICE_LINES,
            blocking=True,
            description="Every rated line invoiced at its amount; every line rounded once.",
        ),
        dg.AssetCheckSpec(
            names.PREPAID_BALANCES_SCHEMA,
            asset=PREPAID_BALANCES,
            blocking=True,
            description="Opening − drawn − expired = closing, never below zero.",
        ),
        dg.AssetCheckSpec(
            names.PREPAID_BALANCES_TIE_TO_DRAWDOWNS,
            asset=PREPAID_BALANCES,
            blocking=True,
            description="What a balance lost is what its invoices' drawdown lines took.",
        ),
    ],
)
def invoice_lines(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    reference: ReferenceDataResource,
    control_db: ControlDbResource,
    landing: LandingResource,
    ingest_rules: IngestRulesResource,
) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]:
    month = open_month(context, control_db)
    if month is None:
        return
    period, first, last = month.period, month.first, month.last
    store = warehouse.get()
    billable_path = store.partition_path(BILLABLE_USAGE, period)
    if not billable_path.exists():
        raise RuntimeError(f"billable_usage for {period} is missing: materialize it first")
    billable = pq.read_table(billable_path)
    previous = previous_balances(store, period)
    ref = reference.get()
    plans = ref.plans()
    contracts = ref.contracts(plans)
    customers = ref.customers().select("customer_id", "entity_id", "currency").to_arrow()
    credits = ref.credits(contracts, plans)
    con = store.duckdb()
    try:
        terms_in_force(con, reference_tables(plans, contracts), first, last)
        lines, balances = issue_invoices(
            con,
            billable,
            customers,
            credits,
            previous.to_arrow() if previous is not None else None,
            period,
            first,
            last,
        )
    finally:
        con.close()
    # Locked months whose late events can still land, and months a controller asked to
    # reprocess: restated from today's data, the difference billed in this month.
    rules = ingest_rules.get()
    db = control_db.get()
    try:
        restated = restated_months(db, rules, period)
        adjustments = [
            restate(store, landing.get(), db, rules, ref, month, period) for month in restated
        ]
    finally:
        db.dispose()
    if adjustments:
        lines = sort_lines(pa.concat_tables([lines, *(a.cast(lines.schema) for a in adjustments)]))
    frame = pl.from_arrow(lines)
    prepaid = pl.from_arrow(balances)
    rated = pl.from_arrow(billable)
    assert isinstance(frame, pl.DataFrame)
    assert isinstance(prepaid, pl.DataFrame)
    assert isinstance(rated, pl.DataFrame)
    invoice_key, prepaid_key = dg.AssetKey(INVOICE_LINES), dg.AssetKey(PREPAID_BALANCES)
    yield from commit_if_checks_pass(
        store,
        {INVOICE_LINES: (period, lines), PREPAID_BALANCES: (period, balances)},
        [
            check_result(
                names.INVOICE_LINES_SCHEMA,
                invoice_key,
                [(first, validate_schema(InvoiceLines, frame))],
            ),
            check_result(
                names.INVOICE_LINES_TIE_TO_BILLABLE_USAGE,
                invoice_key,
                [(first, invoice_ties_to_billable_usage(frame, rated))],
            ),
            check_result(
                names.PREPAID_BALANCES_SCHEMA,
                prepaid_key,
                [(first, validate_schema(PrepaidBalances, prepaid))],
            ),
            check_result(
                names.PREPAID_BALANCES_TIE_TO_DRAWDOWNS,
                prepaid_key,
                [(first, prepaid_ties(frame, prepaid))],
            ),
        ],
    )
    invoices = frame.group_by("document_type", "invoice_id", "currency").agg(
        total=pl.col("amount").sum()
    )
    totals = (
        invoices.group_by("currency", "document_type")
        .agg(documents=pl.len(), total=pl.col("total").sum())
        .sort("currency", "document_type")
    )
    by_kind = (
        frame.group_by("currency", "kind")
        .agg(lines=pl.len(), amount=pl.col("amount").sum())
        .sort("currency", "kind")
    )
    context.log.info(
        f"invoiced {period}: {invoices.height} documents, {frame.height} lines, "
        f"{prepaid.height} prepaid balances"
    )
    yield dg.MaterializeResult(
        asset_key=INVOICE_LINES,
        metadata={
            "period": period,
            "dagster/row_count": frame.height,
            "documents": invoices.height,
            "totals_by_currency": dg.MetadataValue.md(markdown_table(totals)),
            "lines_by_kind": dg.MetadataValue.md(markdown_table(by_kind, limit=60)),
            "preview": dg.MetadataValue.md(
                markdown_table(
                    frame.select(
                        "invoice_id", "kind", "charge_id", "quantity", "amount", "currency"
                    ).head(10)
                )
            ),
            "path": dg.MetadataValue.path(str(store.partition_path(INVOICE_LINES, period))),
        },
    )
    yield dg.MaterializeResult(
        asset_key=PREPAID_BALANCES,
        metadata={
            "period": period,
            "dagster/row_count": prepaid.height,
            "carried_from": previous_period(period) if previous is not None else "granted",
            "balances": dg.MetadataValue.md(markdown_table(prepaid)),
            "path": dg.MetadataValue.path(str(store.partition_path(PREPAID_BALANCES, period))),
        },
    )


def restated_months(db: ControlDb, rules: IngestRules, period: str) -> list[str]:
    """Locked months before ``period`` whose late events may land on its landing days, and
    those a controller asked to reprocess."""
    first, _ = month_bounds(period)
    late = [
        lock.period
        for lock in db.locks()
        if lock.period < period and landing_window(*month_bounds(lock.period), rules)[1] >= first
    ]
    return sorted({*late, *db.reprocessing(period)})


def restate(
    store: Warehouse,
    landing: Landing,
    db: ControlDb,
    rules: IngestRules,
    ref: ReferenceData,
    month: str,
    period: str,
) -> pa.Table:
    """``month`` rated and invoiced again from today's events and reference data (its own
    partitions stay as they were locked), compared with what was issued for it and adjusted
    since: the adjustment lines of ``period``."""
    first, last = month_bounds(month)
    files, days = month_usage_files(landing, store, db, rules, month)
    plans = ref.plans()
    contracts = ref.contracts(plans)
    customers = ref.customers().select("customer_id", "entity_id", "currency").to_arrow()
    before = store.partition_path(PREPAID_BALANCES, previous_period(month))
    con = store.duckdb()
    try:
        terms_in_force(con, reference_tables(plans, contracts), first, last)
        billable = rate_month(
            con,
            files,
            rating_ingest.meters_table(ref.meters()),
            month,
            first,
            last,
            daily_usage_files=days,
        )
        restated, _ = issue_invoices(
            con,
            billable,
            customers,
            ref.credits(contracts, plans),
            pq.read_table(before) if before.exists() else None,
            month,
            first,
            last,
        )
        issued = pq.read_table(store.partition_path(INVOICE_LINES, month))
        between = [
            store.partition_path(INVOICE_LINES, p)
            for p in store.partitions(INVOICE_LINES)
            if month < p < period
        ]
        earlier = (
            pa.concat_tables([pq.read_table(p).cast(restated.schema) for p in between]).filter(
                pc.equal(pc.field("kind"), "prior_period_adjustment")
            )
            if between
            else restated.schema.empty_table()
        )
        _, period_end = month_bounds(period)
        return prior_period_adjustments(con, restated, issued, earlier, month, period, period_end)
    finally:
        con.close()


def sort_lines(lines: pa.Table) -> pa.Table:
    """Invoice lines in their published order: date, invoice, kind, line id."""
    frame = pl.from_arrow(lines)
    assert isinstance(frame, pl.DataFrame)
    order = {kind: n for n, kind in enumerate(INVOICE_KINDS)}
    return (
        frame.with_columns(_rank=pl.col("kind").replace_strict(order, return_dtype=pl.Int32))
        .sort("invoice_date", "invoice_id", "_rank", "line_id")
        .drop("_rank")
        .to_arrow()
        .cast(lines.schema)
    )


def invoice_history(store: Warehouse, up_to: str) -> pa.Table:
    """Every invoice line issued in the months up to ``up_to``: recurring fees billed in
    advance are earned over months (a yearly fee over twelve)."""
    paths = [store.partition_path(INVOICE_LINES, p) for p in store.partitions(INVOICE_LINES)]
    paths = [p for p in paths if p.stem <= up_to]
    if not paths or paths[-1].stem != up_to:
        raise RuntimeError(f"invoice_lines for {up_to} is missing: materialize it first")
    return pa.concat_tables([pq.read_table(p) for p in paths])
