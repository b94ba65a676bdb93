"""Jobs: what the schedules, sensors and the CLI launch."""

import dagster as dg

from dagster_project.partitions import close_monthly_partition, usage_daily_partition
from resources.approval import approve_journals
from resources.control_db import ControlDbResource
from resources.warehouse import WarehouseResource
from resources.webhook import WebhookResource

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest"),
    partitions_def=usage_daily_partition,
    description="Ingest landing days into usage_events (+ quarantine, duplicates) and daily_usage.",
)

close_job = dg.define_asset_job(
    "close_job",
    selection=dg.AssetSelection.groups("billing", "close", "publish"),
    partitions_def=close_monthly_partition,
    description=(
        "Close a month: rate its usage under the contract terms in force (billable_usage), "
        "issue its invoices and credit memos (invoice_lines, prepaid_balances), schedule "
        "revenue (revenue_schedule), book balanced journals (journal_lines), reconcile, "
        "write the import files, and end by publishing the approved journals to the ERP "
        "(erp_publication); each step gated by the blocking checks of the one before."
    ),
)

publish_job = dg.define_asset_job(
    "publish_job",
    selection=dg.AssetSelection.groups("publish"),
    partitions_def=close_monthly_partition,
    description=(
        "Publish a closed month's approved journals to the ERP (exactly once, resuming "
        "where an earlier run stopped) and reconcile what the ERP holds."
    ),
)


class ReprocessConfig(dg.Config):  # type: ignore[misc]
    """What to restate, why, and who asks."""

    period: str
    reason: str
    requested_by: str


@dg.op(description="Record a controller's request to restate a locked month.")
def request_reprocessing(
    context: dg.OpExecutionContext, config: ReprocessConfig, control_db: ControlDbResource
) -> str:
    db = control_db.get()
    try:
        db.migrate()
        booked_in = db.request_reprocess(config.period, config.requested_by, config.reason)
    finally:
        db.dispose()
    context.log.info(
        f"{config.period} will be restated when {booked_in} is closed (run close_job for "
        f"partition {booked_in}-01); the difference is booked there as prior-period "
        "adjustments, and the locked month is not rewritten"
    )
    return booked_in


@dg.job(
    description=(
        "Reprocess a locked month: record the request (period, reason, requested_by in the "
        "launchpad config); the next close of the open period restates the month and books "
        "the difference there. A locked month's own partitions are never rewritten."
    )
)
def reprocess_job() -> None:
    request_reprocessing()


class DeliveryConfig(dg.Config):  # type: ignore[misc]
    """Which events to deliver: one period's, or every one waiting (empty)."""

    period: str = ""


@dg.op(description="Deliver waiting business events to the webhook, once each in effect.")
def deliver_business_events(
    context: dg.OpExecutionContext,
    config: DeliveryConfig,
    control_db: ControlDbResource,
    webhook: WebhookResource,
) -> None:
    if not webhook.endpoint:
        context.log.info("no webhook configured (METERCLOSE_WEBHOOK_URL): events stay queued")
        return
    db = control_db.get()
    try:
        report = webhook.deliver(db, period=config.period or None)
    finally:
        db.dispose()
    context.log.info(report.summary())
    if report.failed:
        raise dg.Failure(
            description=f"{report.failed} event(s) not delivered; the next run retries them",
            metadata={"summary": report.summary()},
        )


@dg.job(
    description=(
        "Deliver the outbox of business events (ContractActivated, UsageRated, InvoiceIssued, "
        "CreditMemoCreated, RevenueJournalApproved) to the webhook: retried for technical "
        "faults, rejected ones kept with the receiver's message, each keyed by its event id."
    )
)
def deliver_events_job() -> None:
    deliver_business_events()


class ApprovalConfig(dg.Config):  # type: ignore[misc]
    """Whose approval, of which month, for which entities (none listed: all of them)."""

    period: str
    approved_by: str
    entities: list[str] | None = None


@dg.op(description="Approve a closed month's journals, per entity, on their content.")
def approve_period_journals(
    context: dg.OpExecutionContext,
    config: ApprovalConfig,
    control_db: ControlDbResource,
    warehouse: WarehouseResource,
) -> list[str]:
    db = control_db.get()
    try:
        chosen = approve_journals(
            warehouse.get().root, db, config.period, config.entities, config.approved_by
        )
    finally:
        db.dispose()
    context.log.info(
        f"{config.period} journals approved by {config.approved_by} for {', '.join(chosen)}; "
        f"publish them with publish_job (partition {config.period}-01)"
    )
    return chosen


@dg.job(
    description=(
        "Approve a closed month's journals (period, approved_by and optionally entities in "
        "the launchpad config): only approved journals are published to the ERP, and the "
        "approval holds only while the journals stay as they were approved."
    )
)
def approve_job() -> None:
    approve_period_journals()
