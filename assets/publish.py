"""Publishing a month's approved journals to the ERP, and reconciling what it holds."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl

from assets.exports import ERP_EXPORTS
from assets.gates import check_result, failed_checks, open_month, refuse
from assets.journals import JOURNAL_LINES
from assets.reconcile import RECONCILIATION
from checks import names
from checks.journals import journals_balance, reconciliation_explained
from checks.outcome import markdown_table, validate_schema
from checks.schemas import Exceptions
from dagster_project.partitions import close_monthly_partition
from dagster_project.settings import SettingsResource
from lifecycle import transitions
from rating.erp import (
    EXCEPTION_COLUMNS,
    document_lines,
    documents,
    entity_digests,
    erp_controls,
    erp_exceptions,
)
from resources.approval import approved_entities
from resources.control_db import ControlDbResource
from resources.erp.adapter import Customer
from resources.erp.publish_ledger import CONFIRMED, PublishLedger
from resources.erp.publisher import Publisher, PublishReport
from resources.erp.resource import ErpResource
from resources.reference import ReferenceDataResource
from resources.warehouse import WarehouseResource

ERP_PUBLICATION = "erp_publication"
ERP_RECONCILIATION = "erp_reconciliation"
ERP_EXCEPTIONS = "erp_exceptions"


def report_cases(report: PublishReport, docs: pl.DataFrame) -> pl.DataFrame:
    """One exception case per document the ERP refused, that was held, that changed after
    it was sent, or whose batch kept failing."""
    entity = dict(zip(docs["external_id"], docs["entity_id"], strict=True))
    currency = dict(zip(docs["external_id"], docs["functional_currency"], strict=True))
    debit = dict(zip(docs["external_id"], docs["functional_debit"], strict=True))
    cases = []

    def case(kind: str, severity: str, external_id: str, reason: str, action: str) -> None:
        cases.append(
            {
                "kind": kind,
                "severity": severity,
                "entity_id": entity.get(external_id),
                "customer_id": None,
                "reason": f"{external_id}: {reason}",
                "action": action,
                "amount": debit.get(external_id),
                "currency": currency.get(external_id),
            }
        )

    for external_id, message in sorted(report.rejected.items()):
        case(
            "erp_rejected",
            "high",
            external_id,
            f"the ERP refused it: {message}",
            "Fix the cause in the ERP (open the period, add the account), then publish with "
            "--retry-rejected; or fix our data, and the changed document goes again",
        )
    for external_id, why in sorted(report.held.items()):
        case(
            "erp_customer_conflict",
            "high",
            external_id,
            f"held: {why}",
            "Correct the customer in the ERP or in customers.csv; nothing was overwritten",
        )
    for changed in report.changed:
        case(
            "erp_document_changed",
            "high",
            changed.external_id,
            f"changed after it was {changed.state} to the ERP "
            f"(content {changed.old_sha256[:12]} → {changed.new_sha256[:12]})",
            "Reverse the document in the ERP and reprocess the month, or restore the inputs",
        )
    for external_id in sorted(report.failed):
        case(
            "erp_unreachable",
            "medium",
            external_id,
            # The fault itself is in the ledger and erp_publication.message; the reason
            # stays fixed so the exception keeps its id from run to run.
            "not confirmed: the ERP did not answer through every retry",
            "Publish again when the ERP answers; the ledger resumes where this stopped",
        )
    schema = {c: pl.String for c in EXCEPTION_COLUMNS} | {"amount": pl.Decimal(38, 12)}
    return pl.DataFrame(cases, schema=schema)


def unchecked(reconciliation: Path, lines: pl.DataFrame, period: str) -> str | None:
    """Why the month's journals may not go to the ERP as they stand, or None. Publishing
    runs on its own (publish_job), where the close's blocking checks do not gate it: nothing
    is sent unless the journals balance and the month's reconciliation explains every
    variance."""
    balance = journals_balance(lines)
    if not balance.passed:
        return f"{period} is not published: {balance.description}"
    if not reconciliation.exists():
        return f"{period} is not published: it has no reconciliation ({reconciliation})"
    controls = reconciliation_explained(pl.read_parquet(reconciliation))
    if not controls.passed:
        return f"{period} is not published: {controls.description}"
    return None


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ERP_PUBLICATION,
            description="Each ERP document of the month: external id, content digest, state.",
            group_name="publish",
            kinds={"parquet"},
            # After the reconciliation: in the close job its blocking check gates publishing.
            deps=[JOURNAL_LINES, ERP_EXPORTS, RECONCILIATION],
            skippable=True,
        ),
        dg.AssetSpec(
            ERP_RECONCILIATION,
            description="What the ERP holds against journal_lines, per entity, account, currency.",
            group_name="publish",
            kinds={"parquet"},
            deps=[JOURNAL_LINES],
            skippable=True,
        ),
        dg.AssetSpec(
            ERP_EXCEPTIONS,
            description="Rejected, held and changed documents, and ERP balances that differ.",
            group_name="publish",
            kinds={"parquet"},
            deps=[JOURNAL_LINES],
            skippable=True,
        ),
    ],
    partitions_def=close_monthly_partition,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    # Without an ERP the step yields nothing, checks included: every output is optional.
    can_subset=True,
    check_specs=[
        dg.AssetCheckSpec(
            names.ERP_RECONCILIATION_NO_UNEXPLAINED_VARIANCE,
            asset=ERP_RECONCILIATION,
            blocking=True,
            description="The ERP's balances equal journal_lines, but for documents not sent.",
        ),
        dg.AssetCheckSpec(
            names.ERP_EXCEPTIONS_SCHEMA,
            asset=ERP_EXCEPTIONS,
            blocking=True,
            description="ERP exceptions are well formed (the exception queue's schema).",
        ),
    ],
)
def erp_publication(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    control_db: ControlDbResource,
    reference: ReferenceDataResource,
    erp: ErpResource,
    settings: SettingsResource,
) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]:
    if not erp.configured:
        context.log.info(
            f"{context.partition_key}: no ERP configured (METERCLOSE_ERP=tryton and "
            "METERCLOSE_ERP_*): nothing published; the import files are in exports/"
        )
        return
    month = open_month(context, control_db, "published")
    if month is None:
        return
    period, first = month.period, month.first
    db = control_db.get()
    try:
        decision = transitions.may_publish(settings.get(), db, period)
    finally:
        db.dispose()
    store = warehouse.get()
    lines = pl.read_parquet(store.partition_path(JOURNAL_LINES, period))
    why_not = (
        str(decision)
        if not decision.allowed
        else unchecked(store.partition_path(RECONCILIATION, period), lines, period)
    )
    if why_not:
        refuse(context, why_not)
        return
    adapter = erp.adapter()
    db = control_db.get()
    try:
        parts = document_lines(lines, adapter.max_lines, adapter.single_date)
        docs = documents(parts)
        approved = approved_entities(entity_digests(lines), db.approvals(period))
        customers = [
            Customer(r["customer_id"], r["name"], r["entity_id"], r["currency"])
            for r in reference.get().customers().iter_rows(named=True)
        ]
        ledger = PublishLedger(db.engine, adapter.target)
        publisher = Publisher(
            adapter, ledger, concurrency=erp.concurrency, attempts=erp.attempts,
            log=context.log.info,
        )  # fmt: skip
        report = publisher.publish(period, docs, approved, customers)
        states = {r["external_id"]: r for r in ledger.rows(period)}
        theirs = adapter.balances(period, sorted(lines["entity_id"].unique()))
    finally:
        adapter.close()
        db.dispose()
    unsent = [i for i in docs["external_id"] if states.get(i, {}).get("state") != CONFIRMED]
    controls = erp_controls(
        period, lines, theirs, parts.filter(pl.col("external_id").is_in(unsent))
    )
    queue = erp_exceptions(period, report_cases(report, docs), controls)
    kept = ("external_id", "state", "erp_document_id", "last_error", "payload_sha256")
    ledger_rows = pl.DataFrame(
        [{k: r[k] for k in kept} for r in states.values()],
        schema={c: pl.String for c in kept},
    ).rename({"payload_sha256": "published_sha256"})
    header = [
        "external_id", "period", "entity_id", "journal_id", "category", "accounting_date",
        "currency", "functional_currency", "line_count", "debit", "credit",
        "functional_debit", "functional_credit", "payload_sha256",
    ]  # fmt: skip
    publication = (
        docs.select(header)
        .join(ledger_rows, on="external_id", how="left")
        .with_columns(
            target=pl.lit(adapter.target),
            awaiting_approval=pl.col("entity_id").is_in(sorted(approved)).not_(),
            # The ledger keeps the content last handed to the ERP: a difference here is a
            # document changed after it was sent (see erp_exceptions).
            content_changed=pl.col("published_sha256") != pl.col("payload_sha256"),
        )
        .rename({"last_error": "message"})
        .sort("external_id")
    )
    # What the ERP now holds is recorded whatever the checks say: it is how a controller
    # finds out what went wrong there.
    store.write(
        {
            ERP_PUBLICATION: (period, publication.to_arrow()),
            ERP_RECONCILIATION: (period, controls.to_arrow()),
            ERP_EXCEPTIONS: (period, queue.to_arrow()),
        }
    )
    by_state = publication.group_by("entity_id", "state").len().sort("entity_id", "state")
    context.log.info(
        f"{period} → {adapter.target}: {report.created} created, {report.found} already there, "
        f"{len(report.rejected)} rejected, {len(report.held)} held, "
        f"{len(report.awaiting_approval)} awaiting approval, {len(report.failed)} failed, "
        f"in {report.elapsed_seconds:.1f} s"
    )
    materialized: list[dg.MaterializeResult[None]] = [
        dg.MaterializeResult(
            asset_key=dg.AssetKey(ERP_PUBLICATION),
            metadata={
                "period": period,
                "target": adapter.target,
                "documents": docs.height,
                "created_now": report.created,
                "found_in_erp": report.found,
                "rejected": len(report.rejected),
                "held": len(report.held),
                "awaiting_approval": len(report.awaiting_approval),
                "failed": len(report.failed),
                "seconds": round(report.elapsed_seconds, 2),
                "by_state": dg.MetadataValue.md(markdown_table(by_state)),
            },
        ),
        dg.MaterializeResult(
            asset_key=dg.AssetKey(ERP_RECONCILIATION),
            metadata={
                "controls": controls.height,
                "unexplained": controls.filter(pl.col("status") == "unexplained").height,
                "preview": dg.MetadataValue.md(markdown_table(controls.head(20))),
            },
        ),
        dg.MaterializeResult(
            asset_key=dg.AssetKey(ERP_EXCEPTIONS),
            metadata={
                "exceptions": queue.height,
                "preview": dg.MetadataValue.md(
                    markdown_table(queue.select("kind", "severity", "entity_id", "reason").head(20))
                ),
            },
        ),
    ]
    checked = [
        check_result(
            names.ERP_RECONCILIATION_NO_UNEXPLAINED_VARIANCE,
            dg.AssetKey(ERP_RECONCILIATION),
            [(first, reconciliation_explained(controls))],
        ),
        check_result(
            names.ERP_EXCEPTIONS_SCHEMA,
            dg.AssetKey(ERP_EXCEPTIONS),
            [(first, validate_schema(Exceptions, queue))],
        ),
    ]
    # The three tables are made together; a subset selected in the UI reports its part.
    selected = context.selected_asset_check_keys
    yield from (
        c
        for c in checked
        if c.asset_key and c.check_name and dg.AssetCheckKey(c.asset_key, c.check_name) in selected
    )
    failed = failed_checks(checked)
    if failed:
        # The partition does not show published on a ledger that does not tie.
        raise dg.Failure(
            description=f"{period}: the ERP does not tie: " + "; ".join(failed),
            allow_retries=False,
        )
    yield from (m for m in materialized if m.asset_key in context.selected_asset_keys)
