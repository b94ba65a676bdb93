"""The ends of a month's close: its landing calendar (the gate every close step waits on)
and its close record (who prepared it, from which run, on which journals)."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from assets.gates import refuse
from checks.outcome import markdown_table
from dagster_project.partitions import close_monthly_partition
from dagster_project.settings import SettingsResource
from lifecycle import facts as month
from lifecycle import rules
from lifecycle.transitions import record_prepared
from resources.control_db import ControlDbResource, Transition
from resources.warehouse import WarehouseResource

LANDING_CALENDAR = "landing_calendar"
CLOSE_RECORD = "close_record"
# Run tag: who prepared the close (read by its last step).
PREPARED_BY_TAG = "meterclose/prepared_by"


class CloseConfig(dg.Config):
    """Who prepares this close (recorded with it; the approver must be someone else)."""

    prepared_by: str


def calendar_frame(calendar: tuple[rules.LandingDay, ...]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "landing_day": [d.day for d in calendar],
            "status": [d.status for d in calendar],
            "files": [d.files for d in calendar],
            "raw_lines": [d.raw_lines for d in calendar],
            "quarantined": [d.quarantined for d in calendar],
            "confirmed_by": [d.confirmed_by for d in calendar],
            "confirmed_at": [d.confirmed_at for d in calendar],
            "confirmation_reason": [d.confirmation_reason for d in calendar],
        },
        schema_overrides={"confirmed_by": pl.String, "confirmed_at": pl.String},
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            LANDING_CALENDAR,
            description=(
                "Every landing day of a month's calendar (through the cutoff in the next "
                "month): files, lines, ingest status and any controller's confirmation."
            ),
            group_name="billing",
            kinds={"parquet"},
            deps=["usage_events"],
            skippable=True,
        )
    ],
    partitions_def=close_monthly_partition,
    can_subset=True,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
)
def landing_calendar(
    context: dg.AssetExecutionContext,
    config: CloseConfig,
    control_db: ControlDbResource,
    warehouse: WarehouseResource,
    settings: SettingsResource,
) -> Iterator[dg.MaterializeResult[None]]:
    """The gate of the close: a month whose calendar is incomplete, or that is locked, is
    refused here, so nothing downstream runs and no partition changes status."""
    period = context.partition_key
    db = control_db.get()
    try:
        facts = month.month_facts(settings.get(), db, period)
    finally:
        db.dispose()
    decision = rules.may_close(facts)
    frame = calendar_frame(facts.calendar)
    if not decision.allowed:
        refuse(context, str(decision))
        return
    if not config.prepared_by.strip():
        refuse(context, "a close needs the preparer's name (prepared_by)")
        return
    context.instance.add_run_tags(context.run.run_id, {PREPARED_BY_TAG: config.prepared_by})
    store = warehouse.get()
    store.write({LANDING_CALENDAR: (period, frame.to_arrow())})
    confirmed = frame.filter(pl.col("confirmed_by").is_not_null())
    yield dg.MaterializeResult(
        asset_key=LANDING_CALENDAR,
        metadata={
            "period": period,
            "prepared_by": config.prepared_by,
            "cutoff": str(facts.cutoff),
            "dagster/row_count": frame.height,
            "confirmed_days": confirmed.height,
            "calendar": dg.MetadataValue.md(markdown_table(frame, limit=40)),
            "path": dg.MetadataValue.path(str(store.partition_path(LANDING_CALENDAR, period))),
        },
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            CLOSE_RECORD,
            description="A month's close record: its state, who did each step, what is next.",
            group_name="close",
            kinds={"sqlite"},
            deps=["reconciliation", "exceptions", "erp_exports", "business_events"],
            skippable=True,
        )
    ],
    partitions_def=close_monthly_partition,
    can_subset=True,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
)
def close_record(
    context: dg.AssetExecutionContext, control_db: ControlDbResource, settings: SettingsResource
) -> Iterator[dg.MaterializeResult[None]]:
    period = context.partition_key
    run = context.instance.get_run_by_id(context.run.run_id)
    prepared_by = run.tags.get(PREPARED_BY_TAG) if run else None
    if not prepared_by:
        refuse(context, f"{period}: no preparer recorded for this run: run landing_calendar too")
        return
    db = control_db.get()
    try:
        record_prepared(settings.get(), db, period, prepared_by, context.run.run_id)
        facts = month.month_facts(settings.get(), db, period)
        transitions = db.transitions(period)
    finally:
        db.dispose()
    yield dg.MaterializeResult(asset_key=CLOSE_RECORD, metadata=status_metadata(facts, transitions))


def status_metadata(
    facts: rules.MonthFacts, transitions: list[Transition]
) -> dict[str, str | dg.MarkdownMetadataValue]:
    """What a controller reads on the close assets: state, blockers, who did each step."""
    nxt = {
        "prepared": rules.may_approve(facts, "another person"),
        "approved": rules.may_lock(facts),
        "published": rules.may_lock(facts),
    }.get(facts.state)
    history = pl.DataFrame(
        {
            "transition": [t.transition for t in transitions],
            "entity": [t.entity_id or "all" for t in transitions],
            "by": [t.actor for t in transitions],
            "at": [f"{t.at:%Y-%m-%d %H:%M}" for t in transitions],
            "run": [(t.run_id or "")[:8] for t in transitions],
        },
        schema={"transition": pl.String, "entity": pl.String, "by": pl.String,
                "at": pl.String, "run": pl.String},
    )  # fmt: skip
    return {
        "period": facts.period,
        "state": facts.state,
        "prepared_by": facts.prepared_by or "",
        "approved": ", ".join(f"{e} by {a}" for e, a in sorted(facts.approvers.items())) or "-",
        "next": str(nxt) if nxt is not None else "-",
        "history": dg.MetadataValue.md(markdown_table(history, limit=40)),
    }
