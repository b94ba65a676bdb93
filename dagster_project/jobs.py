"""Jobs: what the schedules, sensors, the UI and the CLI launch — one per step of a close.

Each step's rule lives in ``lifecycle.rules``; the ops here gather the month's facts, ask
the rule, act, and record the transition. A refused step ends the run without failing it:
it says why in one line (in the log and as the run's ``meterclose/refused`` tag).
"""

from datetime import date

import dagster as dg

from assets.gates import refuse
from dagster_project.partitions import close_monthly_partition, usage_daily_partition
from dagster_project.settings import SettingsResource
from lifecycle import transitions
from resources.control_db import ControlDbResource
from resources.webhook import WebhookResource

# What keeps runs apart (see dagster.yaml's run queue): one run per partition at a time,
# and one ingest at a time (each day's deduplication reads the days before it).
PARTITION_TAG = "dagster/partition"
QUEUE_TAG = "meterclose/queue"
ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest"),
    partitions_def=usage_daily_partition,
    tags={QUEUE_TAG: "ingest"},
    description="Ingest landing days into usage_events (+ quarantine, duplicates) and daily_usage.",
)

close_job = dg.define_asset_job(
    "close_job",
    # Restating a locked month is its own job (reprocess_job).
    selection=dg.AssetSelection.groups("billing", "close")
    - dg.AssetSelection.assets("restatement"),
    partitions_def=close_monthly_partition,
    description=(
        "Close a month (prepared_by in the landing_calendar config): check its landing "
        "calendar is complete, rate its usage (billable_usage), issue invoices and credit "
        "memos, schedule revenue, book balanced journals, reconcile and write the import "
        "files; each step gated by the blocking checks of the one before. Approve, publish "
        "and lock are their own jobs."
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


def _refused(context: dg.OpExecutionContext, exc: transitions.Refused) -> None:
    refuse(context, str(exc))


reprocess_job = dg.define_asset_job(
    "reprocess_job",
    selection=dg.AssetSelection.assets("restatement"),
    partitions_def=close_monthly_partition,
    description=(
        "Reprocess a locked month (pick it in the partition picker; reason and requested_by "
        "in the launchpad config): records the request and shows at once, on the "
        "restatement asset, the adjustment lines it makes from today's events and reference "
        "data. The next close of the open period books them. A locked month's own "
        "partitions are never rewritten."
    ),
)


class DeliveryConfig(dg.Config):
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
    except ValueError as exc:  # a missing signing secret: a configuration fix, not a retry
        refuse(context, str(exc))
        return
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


class ApprovalConfig(dg.Config):
    """Whose approval, for which entities (none listed: all of them)."""

    approved_by: str
    entities: list[str] | None = None


@dg.op(description="Approve a closed month's journals, per entity, on their content.")
def approve_period_journals(
    context: dg.OpExecutionContext,
    config: ApprovalConfig,
    control_db: ControlDbResource,
    settings: SettingsResource,
) -> list[str]:
    period = context.partition_key
    db = control_db.get()
    try:
        chosen = transitions.approve(
            settings.get(), db, period, config.entities, config.approved_by, context.run_id
        )
    except transitions.Refused as exc:
        _refused(context, exc)
        return []
    finally:
        db.dispose()
    context.log.info(
        f"{period} journals approved by {config.approved_by} for {', '.join(chosen)}; "
        f"publish them with publish_job (partition {period}), then lock it with lock_job"
    )
    return chosen


@dg.job(
    partitions_def=close_monthly_partition,
    description=(
        "Approve a closed month's journals (approved_by, and optionally entities, in the "
        "launchpad config; the approver must not be the preparer): only approved journals "
        "are published, and an approval holds only while the journals stay as approved."
    ),
)
def approve_job() -> None:
    approve_period_journals()


class LockConfig(dg.Config):
    """Who locks the month."""

    locked_by: str


@dg.op(description="Lock a closed, approved and published month for good.")
def lock_period(
    context: dg.OpExecutionContext,
    config: LockConfig,
    control_db: ControlDbResource,
    settings: SettingsResource,
) -> str:
    period = context.partition_key
    db = control_db.get()
    try:
        lock = transitions.lock(settings.get(), db, period, config.locked_by, context.run_id)
    except transitions.Refused as exc:
        _refused(context, exc)
        return ""
    finally:
        db.dispose()
    context.log.info(
        f"{period} locked by {lock.locked_by}; reference data kept in {lock.snapshot_path}"
    )
    return lock.snapshot_path


@dg.job(
    partitions_def=close_monthly_partition,
    description=(
        "Lock a month (locked_by in the launchpad config) once its journals are approved as "
        "they stand, its reconciliation has no unexplained variance and the ERP confirmed "
        "every document; keeps a snapshot of the reference data it was closed with."
    ),
)
def lock_job() -> None:
    lock_period()


class ConfirmDayConfig(dg.Config):
    """The landing day a controller confirms complete as it stands, why, and who."""

    day: str
    reason: str
    confirmed_by: str


@dg.op(description="Record a controller's confirmation that a landing day is complete.")
def confirm_landing_day(
    context: dg.OpExecutionContext,
    config: ConfirmDayConfig,
    control_db: ControlDbResource,
    settings: SettingsResource,
) -> str:
    try:
        day = date.fromisoformat(config.day)
    except ValueError:
        refuse(context, f"day {config.day!r}: expected a landing day as YYYY-MM-DD")
        return ""
    db = control_db.get()
    try:
        found = transitions.confirm_day(
            settings.get(), db, day, config.reason, config.confirmed_by, context.run_id
        )
    except transitions.Refused as exc:
        _refused(context, exc)
        return ""
    finally:
        db.dispose()
    context.log.info(
        f"landing day {day} ({found.status}) confirmed complete as it stands by "
        f"{config.confirmed_by}: {config.reason}"
    )
    return found.status


@dg.job(
    description=(
        "Confirm a landing day complete as it stands (day, reason and confirmed_by in the "
        "launchpad config): a day with no files, or a known partial day, or one whose "
        "quarantine rate is above the error threshold. Shown in the month's reconciliation "
        "and exceptions."
    )
)
def confirm_day_job() -> None:
    confirm_landing_day()
