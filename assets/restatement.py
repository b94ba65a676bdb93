"""Restating a locked month: a controller's request, and the difference it makes at once.

The locked month's own partitions are never rewritten. The request is recorded, the month
is rated and invoiced again from today's events and reference data, and the difference
with what was issued and adjusted since is shown here: the adjustment lines that the open
period's close will book (it recomputes them then, so events that land in between count).
"""

from collections.abc import Iterator

import dagster as dg
import polars as pl
import pyarrow as pa

from assets.gates import refuse
from assets.invoice import INVOICE_LINES, restate
from assets.owners import FINANCE_CLOSE
from checks.outcome import markdown_table
from dagster_project.partitions import close_monthly_partition
from dagster_project.settings import SettingsResource
from lifecycle import transitions
from resources.control_db import ControlDbResource
from resources.landing import IngestRulesResource, LandingResource
from resources.reference import ReferenceDataResource
from resources.warehouse import WarehouseResource

RESTATEMENT = "restatement"


class ReprocessConfig(dg.Config):
    """Why the month is restated, and who asks."""

    reason: str
    requested_by: str


def requests_table(requests: list[dict[str, object]]) -> dg.TableMetadataValue:
    """Every reprocess request, pending or booked, as a table a controller can read."""
    columns = ["request", "period", "requested_by", "requested_at", "reason", "state"]
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "request": int(str(r["request_id"])),
                    "period": str(r["period"]),
                    "requested_by": str(r["requested_by"]),
                    "requested_at": f"{r['requested_at']:%Y-%m-%d %H:%M}",
                    "reason": str(r["reason"]),
                    "state": f"booked in {r['booked_in']}" if r["booked_in"] else "pending",
                }
            )
            for r in requests
        ],
        schema=dg.TableSchema(
            columns=[dg.TableColumn(c, "int" if c == "request" else "string") for c in columns]
        ),
    )


@dg.multi_asset(
    # The launchpad config sits under ops.request_reprocessing, as the CLI gives it.
    name="request_reprocessing",
    specs=[
        dg.AssetSpec(
            RESTATEMENT,
            description=(
                "Per reprocessed month: the adjustment lines its latest request makes, to be "
                "booked in the open period; every request, pending or booked, in metadata."
            ),
            group_name="close",
            kinds={"parquet", "duckdb"},
            owners=[FINANCE_CLOSE],
            deps=[INVOICE_LINES],
            skippable=True,
        )
    ],
    partitions_def=close_monthly_partition,
    can_subset=True,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
)
def request_reprocessing(
    context: dg.AssetExecutionContext,
    config: ReprocessConfig,
    control_db: ControlDbResource,
    warehouse: WarehouseResource,
    landing: LandingResource,
    ingest_rules: IngestRulesResource,
    reference: ReferenceDataResource,
    settings: SettingsResource,
) -> Iterator[dg.MaterializeResult[None]]:
    period = context.partition_key
    store = warehouse.get()
    db = control_db.get()
    try:
        try:
            booked_in = transitions.request_reprocess(
                settings.get(), db, period, config.requested_by, config.reason, context.run.run_id
            )
        except transitions.Refused as exc:
            refuse(context, str(exc))
            return
        requests = db.reprocess_requests()
        request_id = int(requests[-1]["request_id"])
        lines = restate(
            store, landing.get(), db, ingest_rules.get(), reference.get(), period, booked_in
        )
    finally:
        db.dispose()
    table = lines.append_column("request_id", pa.array([request_id] * lines.num_rows, pa.int64()))
    store.write({RESTATEMENT: (period, table)})
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    delta = (
        frame.group_by("currency")
        .agg(lines=pl.len(), amount=pl.col("amount").sum())
        .sort("currency")
    )
    summary = ", ".join(f"{row['amount']} {row['currency']}" for row in delta.iter_rows(named=True))
    context.log.info(
        f"{period} restated: {frame.height} adjustment line(s) ({summary or 'no difference'}), "
        f"to be booked when {booked_in} (the open period) is closed: run close_job for "
        f"partition {booked_in}"
    )
    yield dg.MaterializeResult(
        asset_key=RESTATEMENT,
        metadata={
            "period": period,
            "request": request_id,
            "booked_in": booked_in,
            "next": f"run close_job for partition {booked_in} to book it",
            "dagster/row_count": frame.height,
            "difference": dg.MetadataValue.md(
                markdown_table(delta) if delta.height else "no difference"
            ),
            "lines": dg.MetadataValue.md(
                markdown_table(
                    frame.select("invoice_id", "charge_id", "quantity", "amount", "currency")
                )
            ),
            "requests": requests_table(requests),
            "path": dg.MetadataValue.path(str(store.partition_path(RESTATEMENT, period))),
        },
    )
