"""Canonical business events of a month's close, kept as a table and queued for delivery."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from assets.billing import BILLABLE_USAGE
from assets.gates import open_month
from assets.invoice import INVOICE_LINES
from assets.reconcile import RECONCILIATION
from checks.outcome import markdown_table
from dagster_project.partitions import close_monthly_partition
from rating.events import close_events
from rating.terms import reference_tables
from resources.control_db import ControlDbResource
from resources.reference import ReferenceDataResource
from resources.warehouse import WarehouseResource

BUSINESS_EVENTS = "business_events"


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            BUSINESS_EVENTS,
            description=(
                "Versioned business events of the month (contracts, usage, invoices, memos)."
            ),
            group_name="close",
            kinds={"parquet"},
            # Queued for delivery only once the month reconciles: a close stopped by a
            # failed check sends nothing to the systems downstream.
            deps=[INVOICE_LINES, BILLABLE_USAGE, RECONCILIATION],
            skippable=True,
        )
    ],
    partitions_def=close_monthly_partition,
    can_subset=True,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
)
def business_events(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    reference: ReferenceDataResource,
    control_db: ControlDbResource,
) -> Iterator[dg.MaterializeResult[None]]:
    month = open_month(context, control_db)
    if month is None:
        return
    period = month.period
    store = warehouse.get()
    ref = reference.get()
    plans = ref.plans()
    contracts = pl.from_arrow(reference_tables(plans, ref.contracts(plans))["contracts"])
    assert isinstance(contracts, pl.DataFrame)
    events = close_events(
        period,
        pl.read_parquet(store.partition_path(INVOICE_LINES, period)),
        pl.read_parquet(store.partition_path(BILLABLE_USAGE, period)),
        contracts,
    )
    store.write({BUSINESS_EVENTS: (period, events.to_arrow())})
    db = control_db.get()
    try:
        queued = db.enqueue_events(events.to_dicts())
    finally:
        db.dispose()
    counts = events.group_by("event_type").agg(events=pl.len()).sort("event_type")
    context.log.info(f"{events.height} events for {period}, {queued} new or changed in the outbox")
    yield dg.MaterializeResult(
        asset_key=BUSINESS_EVENTS,
        metadata={
            "period": period,
            "dagster/row_count": events.height,
            "queued": queued,
            "by_type": dg.MetadataValue.md(markdown_table(counts)),
            "path": dg.MetadataValue.path(str(store.partition_path(BUSINESS_EVENTS, period))),
        },
    )
