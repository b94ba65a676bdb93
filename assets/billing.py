"""Billing: a month's usage priced under the contract terms in force (billable_usage)."""

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from assets.close import LANDING_CALENDAR
from assets.gates import check_result, commit_if_checks_pass, open_month
from assets.ingest import USAGE_EVENTS
from assets.usage import DAILY_USAGE
from checks import names
from checks.billing import breakdown_ties
from checks.outcome import markdown_table, validate_schema
from checks.schemas import BillableUsage
from dagster_project.partitions import close_monthly_partition
from rating import ingest as rating_ingest
from rating.billing import billable_usage as rate_month
from rating.ingest import IngestRules
from rating.periods import month_bounds
from rating.terms import reference_tables, terms_in_force
from resources.control_db import ControlDb, ControlDbResource
from resources.landing import IngestRulesResource, Landing, LandingResource
from resources.reference import ReferenceDataResource
from resources.warehouse import Warehouse, WarehouseResource

BILLABLE_USAGE = "billable_usage"


def landing_window(first: date, last: date, rules: IngestRules) -> tuple[date, date]:
    """The landing days a month's events can arrive on: from the day before it (an event
    may be stamped up to a day ahead of its landing day) to the lateness limit after it."""
    return (
        first - timedelta(days=rules.future_days - 1),
        last + timedelta(days=rules.lateness_days),
    )


def month_usage_files(
    landing: Landing, store: Warehouse, db: ControlDb, rules: IngestRules, period: str
) -> tuple[list[Path], list[Path]]:
    """The usage_events and daily_usage files of every landing day a month's events can
    arrive on — once each of those days is completely ingested."""
    first, last = month_bounds(period)
    first_landing, late_until = landing_window(first, last, rules)
    landed = [d for d in landing.days() if first_landing <= d <= late_until]
    done = {r.received_date for r in db.days(first_landing, late_until) if r.status == "done"}
    missing = [d for d in landed if d not in done]
    if missing:
        # A blocking check gates only steps of its own run: the month is rated only from
        # landing days whose ingest completed (and passed its checks) in an earlier run.
        raise RuntimeError(
            "landing days not ingested, or whose checks failed: "
            f"{', '.join(map(str, missing[:5]))}"
            f"{' …' if len(missing) > 5 else ''}; materialize usage_events for them first"
        )
    files = store.existing(USAGE_EVENTS, landed)
    days = store.existing(DAILY_USAGE, landed)
    if len(days) != len(landed):
        have = {p.stem for p in days}
        lacking = [d.isoformat() for d in landed if d.isoformat() not in have]
        raise RuntimeError(
            f"daily_usage missing for landing days {', '.join(lacking[:5])}: materialize it first"
        )
    return files, days


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            BILLABLE_USAGE,
            description=(
                "Rated usage per month, contract, service segment, charge and price group."
            ),
            group_name="billing",
            kinds={"parquet", "duckdb"},
            deps=[USAGE_EVENTS, DAILY_USAGE, LANDING_CALENDAR],
            skippable=True,
        )
    ],
    partitions_def=close_monthly_partition,
    can_subset=True,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    check_specs=[
        dg.AssetCheckSpec(
            names.BILLABLE_USAGE_SCHEMA,
            asset=BILLABLE_USAGE,
            blocking=True,
            description="Columns, keys, non-negative amounts, segments inside their month.",
        ),
        dg.AssetCheckSpec(
            names.BILLABLE_USAGE_BREAKDOWN_TIES,
            asset=BILLABLE_USAGE,
            blocking=True,
            description="Each amount is its breakdown's sum, rounded once to the minor unit.",
        ),
    ],
)
def billable_usage(
    context: dg.AssetExecutionContext,
    landing: LandingResource,
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
        files, days = month_usage_files(landing.get(), store, db, ingest_rules.get(), period)
    finally:
        db.dispose()
    ref = reference.get()
    meters = ref.meters()
    plans = ref.plans()
    contracts = ref.contracts(plans)
    con = store.duckdb()
    try:
        terms_in_force(con, reference_tables(plans, contracts), first, last)
        # Totals from daily_usage (exact, and far fewer rows); events only for the
        # percentage charges' per-event fees.
        table = rate_month(
            con,
            files,
            rating_ingest.meters_table(meters),
            period,
            first,
            last,
            daily_usage_files=days,
        )
    finally:
        con.close()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    key = dg.AssetKey(BILLABLE_USAGE)
    yield from commit_if_checks_pass(
        store,
        {BILLABLE_USAGE: (period, table)},
        [
            check_result(
                names.BILLABLE_USAGE_SCHEMA, key, [(first, validate_schema(BillableUsage, frame))]
            ),
            check_result(
                names.BILLABLE_USAGE_BREAKDOWN_TIES, key, [(first, breakdown_ties(frame))]
            ),
        ],
    )
    totals = (
        frame.group_by("currency", "kind")
        .agg(lines=pl.len(), amount=pl.col("amount").sum())
        .sort("currency", "kind")
    )
    context.log.info(
        f"rated {period}: {frame.height} lines for {frame['contract_id'].n_unique()} contracts"
    )
    yield dg.MaterializeResult(
        asset_key=key,
        metadata={
            "period": period,
            "dagster/row_count": frame.height,
            "contracts": frame["contract_id"].n_unique(),
            "landing_days_read": len(files),
            "totals_by_currency": dg.MetadataValue.md(markdown_table(totals)),
            "preview": dg.MetadataValue.md(
                markdown_table(
                    frame.filter(pl.col("amount") > 0)
                    .select(
                        "contract_id",
                        "segment_start",
                        "charge_id",
                        "price_group",
                        "billable_quantity",
                        "amount",
                        "currency",
                    )
                    .head(10)
                )
            ),
            "path": dg.MetadataValue.path(str(store.partition_path(BILLABLE_USAGE, period))),
        },
    )
