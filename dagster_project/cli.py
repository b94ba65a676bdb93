"""The ``meterclose`` command: demo, generate, ingest and close, all through Dagster."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
import warnings
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster_project.settings import REPO_ROOT, Settings, load_settings

if TYPE_CHECKING:
    from checks.outcome import CheckOutcome

DEMO_MONTHS = ("2026-09", "2026-10")
DEMO_EVENTS = 4000
DEMO_SEED = 7
# The demo closes and locks the sample months as a named system user.
DEMO_CONTROLLER = "meterclose-demo"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _month(value: str) -> str:
    try:
        date.fromisoformat(f"{value}-01")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a month as YYYY-MM") from None
    return value


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a day as YYYY-MM-DD") from None


def _prepare(data_dir: str | None) -> Settings:
    """Fix the data root and Dagster instance before any Dagster definitions are imported."""
    # single-run backfill policies are marked beta in Dagster 1.13; we rely on them on
    # purpose, and the warning would only clutter every command's output.
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")
    settings = load_settings(data_dir)
    os.environ["METERCLOSE_DATA_DIR"] = str(settings.data_dir)
    # Runs launched here must land in the instance `dagster dev` reads, so they show up in
    # the UI's run history and asset catalog.
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return settings


def _say(message: str) -> None:
    print(message, flush=True)


def cmd_generate(args: argparse.Namespace) -> int:
    from sampledata import generate

    out = Path(args.out or load_settings(args.data_dir).data_dir)
    if (out / "landing" / "usage").exists():
        _say(f"replacing the landing files under {out / 'landing' / 'usage'}")
    started = time.perf_counter()
    summary = generate(out, list(args.month), args.events, args.seed)
    overall = summary["overall"]
    outcomes = ", ".join(f"{v:,} {k}" for k, v in sorted(overall["outcomes"].items()))
    _say(
        f"generated {', '.join(args.month)} into {out} in {time.perf_counter() - started:.1f}s: "
        f"{overall['lines']:,} landing lines, expected {outcomes} "
        f"(ground truth in {out / 'manifest'})"
    )
    return 0


def _landing_days(settings: Settings, first: date | None, last: date | None) -> list[date]:
    from resources.landing import Landing

    days = Landing(settings.landing_dir).days()
    return [d for d in days if (first is None or d >= first) and (last is None or d <= last)]


def _month_ranges(days: Sequence[date]) -> list[tuple[date, date]]:
    """Contiguous runs of days split at month ends: one Dagster run per month of landing."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(days):
        if ranges and day.month == ranges[-1][1].month and (day - ranges[-1][1]).days == 1:
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def run_ingest(settings: Settings, days: Sequence[date]) -> list[str]:
    """Ingest the days, and whatever else that takes to keep deduplication exact.

    Landing days in the deduplication window before the first day are ingested first if
    they never were; afterwards every later day whose window changed is re-ingested (what
    the stale-window sensor does in a deployment), until none is stale.
    """
    from assets.ingest import stale_landing_days
    from resources.control_db import ControlDb
    from resources.landing import IngestRulesResource, Landing
    from resources.warehouse import Warehouse

    rules = IngestRulesResource(lateness_days=settings.lateness_days).get()
    landing = Landing(settings.landing_dir)
    db = ControlDb(settings.control_db_url)
    db.migrate()
    try:
        done = {r.received_date for r in db.days() if r.status == "done"}
        window_start, _ = rules.dedup_window(min(days))
        before = [d for d in landing.days() if window_start <= d < min(days) and d not in done]
        if before:
            _say(f"first ingesting {len(before)} earlier landing day(s) that deduplication reads")
        run_ids = _run_ranges(settings, sorted(set(days) | set(before)))
        for _ in range(3):
            stale = stale_landing_days(Warehouse(settings.warehouse_dir), db, rules)
            if not stale:
                return run_ids
            last = max(r.received_date for r in db.days())
            redo = [d for d in landing.days() if stale[0] <= d <= last]
            _say(
                f"re-ingesting {len(redo)} landing day(s) from {stale[0]}: "
                "an earlier day now accepts other events"
            )
            run_ids += _run_ranges(settings, redo)
        raise SystemExit(f"landing days still stale after three passes: {stale}")
    finally:
        db.dispose()


def _run_ranges(settings: Settings, days: Sequence[date]) -> list[str]:
    """Materialise ingest and daily usage for the days, one in-process run per month range."""
    from dagster_project.partitions import usage_daily_partition

    known = set(usage_daily_partition.get_partition_keys())
    outside = [d for d in days if d.isoformat() not in known]
    if outside:
        raise SystemExit(
            f"landing day {outside[0]} is outside the daily partitions "
            f"(they start at {usage_daily_partition.start:%Y-%m-%d} and end today): "
            "set METERCLOSE_FIRST_DAY or move the data"
        )
    return [
        _execute(
            settings,
            "ingest_job",
            f"ingest of {first} … {last}",
            tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat()},
        )
        for first, last in _month_ranges(days)
    ]


def run_close(settings: Settings, periods: Sequence[str], locked_by: str | None) -> None:
    """Close each month in order (balances carry from one month to the next), in process,
    through the close job; then, with ``locked_by``, lock it. A month already locked is
    left as it is."""
    from resources.control_db import ControlDb

    db = ControlDb(settings.control_db_url)
    db.migrate()
    try:
        for period in periods:
            lock = db.lock(period)
            if lock is not None:
                _say(
                    f"{period} is closed: locked by {lock.locked_by} at "
                    f"{lock.locked_at:%Y-%m-%d %H:%M} UTC (run {lock.run_id}), left as it is"
                )
                continue
            run_id = _execute(
                settings, "close_job", f"closing {period}", partition_key=f"{period}-01"
            )
            if locked_by is not None:
                # The controller's one-step close: approve every entity's journals, publish
                # them (when an ERP is configured), lock once the ERP has confirmed them.
                approve_period(settings, period, None, locked_by)
                publish_period(settings, period)
                lock_period(settings, period, locked_by, run_id)
                deliver_events(settings, period)
    finally:
        db.dispose()


def _journal_digests(settings: Settings, period: str) -> dict[str, tuple[str, int, int]]:
    from resources.approval import ApprovalError, journal_digests

    try:
        return journal_digests(settings.warehouse_dir, period)
    except ApprovalError as exc:
        raise SystemExit(str(exc)) from None


def deliver_events(settings: Settings, period: str | None) -> None:
    """Deliver waiting business events to the webhook, when one is configured."""
    if not settings.webhook_url:
        return
    from resources.control_db import ControlDb
    from resources.webhook import WebhookResource

    db = ControlDb(settings.control_db_url)
    db.migrate()
    try:
        report = WebhookResource(endpoint=settings.webhook_url).deliver(db, period=period)
    finally:
        db.dispose()
    _say(f"business events: {report.summary()}")


def publish_period(settings: Settings, period: str) -> None:
    """Publish a closed month's approved journals to the ERP, when one is configured."""
    if settings.erp_kind == "none":
        return
    _execute(
        settings,
        "publish_job",
        f"publishing {period} to the ERP ({settings.erp_kind} at {settings.erp_url})",
        partition_key=f"{period}-01",
    )
    _print_publication(settings, [period])


def approve_period(
    settings: Settings, period: str, entities: Sequence[str] | None, approved_by: str
) -> None:
    """Approve a closed month's journals for some entities (all when None), and queue a
    RevenueJournalApproved event for each."""
    from resources.approval import ApprovalError, approve_journals
    from resources.control_db import ControlDb

    db = ControlDb(settings.control_db_url)
    try:
        chosen = approve_journals(settings.warehouse_dir, db, period, entities, approved_by)
    except ApprovalError as exc:
        raise SystemExit(str(exc)) from None
    finally:
        db.dispose()
    _say(f"{period} journals approved by {approved_by} for {', '.join(chosen)}")


def lock_period(settings: Settings, period: str, locked_by: str, run_id: str) -> None:
    """Lock a closed month — only once every entity's journals are approved as they stand
    and its reconciliation has no unexplained variance — and keep a snapshot of the
    reference data it was closed with."""
    import polars as pl

    from resources.control_db import ControlDb
    from resources.reference import ReferenceData

    path = settings.warehouse_dir / "reconciliation" / f"{period}.parquet"
    if not path.exists():
        raise SystemExit(f"{period} has not been closed: no reconciliation at {path}")
    unexplained = pl.read_parquet(path).filter(pl.col("status") == "unexplained")
    if unexplained.height:
        raise SystemExit(
            f"{period} cannot be locked: {unexplained.height} unexplained variance(s) in "
            f"its reconciliation ({', '.join(unexplained['control'].unique().sort())})"
        )
    db = ControlDb(settings.control_db_url)
    try:
        from resources.approval import approved_entities

        digests = _journal_digests(settings, period)
        approved = approved_entities(digests, db.approvals(period))
        stale = [entity for entity in digests if entity not in approved]
        if stale:
            raise SystemExit(
                f"{period} cannot be locked: journals of {', '.join(stale)} are not approved "
                f"as they stand (meterclose approve --period {period})"
            )
        _refuse_unpublished(settings, period)
        reference = ReferenceData(settings.reference_dir, settings.reference_url)
        digest, snapshot = reference.snapshot_to(settings.warehouse_dir / "_snapshots", period)
        db.record_lock(period, locked_by, run_id, digest, str(snapshot))
    finally:
        db.dispose()
    _say(f"{period} locked by {locked_by}; reference data kept in {snapshot}")


def _refuse_unpublished(settings: Settings, period: str) -> None:
    """A month locks only once the ERP has confirmed every document as it stands and what
    the ERP holds ties to journal_lines (close → approve → publish → ERP confirms → lock).
    Decided from the publish ledger, so a shell without the ERP's settings cannot lock a
    month whose publishing is unfinished."""
    import polars as pl
    import sqlalchemy as sa

    from resources.control_db import ControlDb, erp_publication

    db = ControlDb(settings.control_db_url)
    try:
        with db.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    erp_publication.c.target,
                    erp_publication.c.external_id,
                    erp_publication.c.state,
                    erp_publication.c.payload_sha256,
                ).where(erp_publication.c.period == period)
            ).all()
    finally:
        db.dispose()
    if not rows and settings.erp_kind == "none":
        return
    again = f"see erp_exceptions, then meterclose publish --period {period}"
    publication = settings.warehouse_dir / "erp_publication" / f"{period}.parquet"
    if not rows or not publication.exists():
        raise SystemExit(
            f"{period} cannot be locked: it has not been published to the ERP "
            f"(meterclose publish --period {period})"
        )
    documents = pl.read_parquet(publication)
    ledger = pl.DataFrame(
        [tuple(r) for r in rows],
        schema=["target", "external_id", "state", "published_sha256"],
        orient="row",
    )
    current = documents.select("target", "external_id", "payload_sha256").join(
        ledger, on=["target", "external_id"], how="left"
    )
    unconfirmed = current.filter(pl.col("state").fill_null("unpublished") != "confirmed")
    if unconfirmed.height:
        states = dict(
            unconfirmed.group_by(pl.col("state").fill_null("unpublished"))
            .len()
            .sort("state")
            .iter_rows()
        )
        raise SystemExit(
            f"{period} cannot be locked: {unconfirmed.height} of {documents.height} ERP "
            f"document(s) not confirmed ({', '.join(f'{n} {s}' for s, n in states.items())}); "
            + again
        )
    changed = current.filter(pl.col("published_sha256") != pl.col("payload_sha256"))
    if changed.height:
        raise SystemExit(
            f"{period} cannot be locked: {changed.height} ERP document(s) changed after the "
            f"ERP confirmed them ({', '.join(changed['external_id'].head(3))}…); " + again
        )
    controls = pl.read_parquet(settings.warehouse_dir / "erp_reconciliation" / f"{period}.parquet")
    if controls.filter(pl.col("status") == "unexplained").height:
        raise SystemExit(
            f"{period} cannot be locked: the ERP's balances differ from journal_lines "
            "(erp_reconciliation)"
        )


def _last_close_run(period: str) -> str:
    """The id of the latest successful close_job run of a month, from the Dagster instance."""
    import dagster as dg

    instance = dg.DagsterInstance.get()
    records = instance.get_run_records(
        dg.RunsFilter(
            job_name="close_job",
            statuses=[dg.DagsterRunStatus.SUCCESS],
            tags={"dagster/partition": f"{period}-01"},
        ),
        limit=1,
    )
    if not records:
        raise SystemExit(f"{period} has no successful close run: close it first")
    return str(records[0].dagster_run.run_id)


def _execute(settings: Settings, job_name: str, what: str, **kwargs: Any) -> str:
    """Run a job in process on the shared instance; stop, saying why, if it or a check fails."""
    import dagster as dg

    from dagster_project.definitions import build_definitions

    _say(what)
    job = build_definitions(settings).resolve_job_def(job_name)
    result = job.execute_in_process(
        instance=dg.DagsterInstance.get(),
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        raise_on_error=False,
        **kwargs,
    )
    if not result.success:
        failure = next((e for e in result.all_events if e.is_failure), None)
        message = failure.message if failure else "see the run in the Dagster UI"
        raise SystemExit(f"{what} failed (run {result.run_id}): {message}")
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    if failed:
        raise SystemExit(
            f"{what}: blocking checks failed: "
            + "; ".join(f"{c.check_name}: {c.description}" for c in failed)
        )
    return str(result.run_id)


def complete_months(days: Sequence[date]) -> list[str]:
    """Months with landing days that have ended and are monthly partitions."""
    from dagster_project.partitions import close_monthly_partition

    known = set(close_monthly_partition.get_partition_keys())
    months = sorted({f"{d:%Y-%m}" for d in days})
    return [m for m in months if f"{m}-01" in known]


def _refresh_views(settings: Settings) -> None:
    from resources.views import refresh_views

    views = refresh_views(settings.warehouse_dir)
    _say(f"DuckDB views refreshed: {', '.join(views)}")


def _print_close(settings: Settings, periods: Sequence[str]) -> None:
    """What the close of each month produced, table by table."""
    for show in (_print_billing, _print_invoices, _print_journals, _print_reconciliation):
        show(settings, periods)


def _print_billing(settings: Settings, periods: Sequence[str]) -> None:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Rated usage (billable_usage)")
    for column in ("period", "currency", "contracts", "lines", "usage", "minimum true-ups"):
        table.add_column(column, justify="right")
    for period in periods:
        frame = pl.read_parquet(settings.warehouse_dir / "billable_usage" / f"{period}.parquet")
        summary = (
            frame.group_by("currency")
            .agg(
                contracts=pl.col("contract_id").n_unique(),
                lines=pl.len(),
                usage=pl.col("amount").filter(pl.col("kind") == "usage").sum(),
                minimums=pl.col("amount").filter(pl.col("kind") == "minimum_true_up").sum(),
            )
            .sort("currency")
        )
        for row in summary.iter_rows(named=True):
            table.add_row(
                period,
                row["currency"],
                str(row["contracts"]),
                str(row["lines"]),
                f"{row['usage']:,.{_places(row['currency'])}f}",
                f"{row['minimums']:,.{_places(row['currency'])}f}",
            )
    Console().print(table)


def _print_invoices(settings: Settings, periods: Sequence[str]) -> None:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Invoices and credit memos (invoice_lines)")
    columns = ("period", "currency", "invoices", "credit memos", "usage", "recurring fees")
    for column in (*columns, "true-ups", "credits", "prepaid drawn", "total due"):
        table.add_column(column, justify="right")
    kind = pl.col("kind")
    for period in periods:
        frame = pl.read_parquet(settings.warehouse_dir / "invoice_lines" / f"{period}.parquet")
        summary = (
            frame.group_by("currency")
            .agg(
                invoices=pl.col("invoice_id")
                .filter(pl.col("document_type") == "invoice")
                .n_unique(),
                memos=pl.col("invoice_id")
                .filter(pl.col("document_type") == "credit_memo")
                .n_unique(),
                usage=pl.col("amount").filter(kind == "usage").sum(),
                fees=pl.col("amount").filter(kind.str.starts_with("recurring")).sum(),
                true_ups=pl.col("amount").filter(kind.str.ends_with("true_up")).sum(),
                credits=pl.col("amount").filter(kind == "credit").sum(),
                prepaid=pl.col("amount").filter(kind == "prepaid_drawdown").sum(),
                total=pl.col("amount").sum(),
            )
            .sort("currency")
        )
        for row in summary.iter_rows(named=True):
            places = _places(row["currency"])
            table.add_row(
                period,
                row["currency"],
                str(row["invoices"]),
                str(row["memos"]),
                *(
                    f"{row[k]:,.{places}f}"
                    for k in ("usage", "fees", "true_ups", "credits", "prepaid", "total")
                ),
            )
    # Ten money columns do not fit 80 characters; a narrower terminal wraps lines instead
    # of cutting every figure short.
    Console(width=max(Console().width, 132)).print(table)


def _print_journals(settings: Settings, periods: Sequence[str]) -> None:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Journals (journal_lines), functional currency")
    for column in ("period", "entity", "currency", "journals", "lines", "debits", "credits"):
        table.add_column(column, justify="right")
    for period in periods:
        frame = pl.read_parquet(settings.warehouse_dir / "journal_lines" / f"{period}.parquet")
        summary = (
            frame.group_by("entity_id", "functional_currency")
            .agg(
                journals=pl.col("journal_id").n_unique(),
                lines=pl.len(),
                debit=pl.col("functional_debit").sum(),
                credit=pl.col("functional_credit").sum(),
            )
            .sort("entity_id")
        )
        for row in summary.iter_rows(named=True):
            places = _places(row["functional_currency"])
            table.add_row(
                period,
                row["entity_id"],
                row["functional_currency"],
                str(row["journals"]),
                str(row["lines"]),
                f"{row['debit']:,.{places}f}",
                f"{row['credit']:,.{places}f}",
            )
    Console().print(table)


def _print_reconciliation(settings: Settings, periods: Sequence[str]) -> None:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Reconciliation and exceptions")
    columns = ("period", "controls", "tied", "explained", "unexplained", "exceptions")
    for column in (*columns, "of which high"):
        table.add_column(column, justify="right")
    explained: list[str] = []
    for period in periods:
        controls = pl.read_parquet(settings.warehouse_dir / "reconciliation" / f"{period}.parquet")
        queue = pl.read_parquet(settings.warehouse_dir / "exceptions" / f"{period}.parquet")
        status = dict(controls.group_by("status").len().iter_rows())
        table.add_row(
            period,
            str(controls.height),
            *(str(status.get(s, 0)) for s in ("tied", "explained", "unexplained")),
            str(queue.height),
            str(queue.filter(pl.col("severity") == "high").height),
        )
        explained += [
            f"  {period} {r['entity_id']} {r['control']}: {r['explanation']}"
            for r in controls.filter(pl.col("status") != "tied").iter_rows(named=True)
        ]
    Console().print(table)
    if explained:
        _say("variances and why:\n" + "\n".join(explained))


def _print_publication(settings: Settings, periods: Sequence[str]) -> None:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Published to the ERP ({settings.erp_kind}: {settings.erp_url})")
    for column in ("period", "entity", "documents", "lines", "confirmed", "other states"):
        table.add_column(column, justify="right")
    notes: list[str] = []
    for period in periods:
        path = settings.warehouse_dir / "erp_publication" / f"{period}.parquet"
        if not path.exists():
            continue
        docs = pl.read_parquet(path)
        summary = (
            docs.group_by("entity_id")
            .agg(
                documents=pl.len(),
                lines=pl.col("line_count").sum(),
                confirmed=(pl.col("state") == "confirmed").sum(),
                other=pl.col("state").filter(pl.col("state") != "confirmed").sort().unique(),
            )
            .sort("entity_id")
        )
        for row in summary.iter_rows(named=True):
            table.add_row(
                period,
                row["entity_id"],
                str(row["documents"]),
                str(row["lines"]),
                str(row["confirmed"]),
                ", ".join(row["other"]) or "-",
            )
        queue = pl.read_parquet(settings.warehouse_dir / "erp_exceptions" / f"{period}.parquet")
        notes += [f"  {period} {r['kind']}: {r['reason']}" for r in queue.iter_rows(named=True)]
        controls = pl.read_parquet(
            settings.warehouse_dir / "erp_reconciliation" / f"{period}.parquet"
        )
        status = dict(controls.group_by("status").len().iter_rows())
        notes.append(
            f"  {period} ERP read-back: {controls.height} balances by entity, account and "
            f"currency — {status.get('tied', 0)} tied, {status.get('explained', 0)} explained, "
            f"{status.get('unexplained', 0)} unexplained"
        )
    Console().print(table)
    if notes:
        _say("\n".join(notes))


def _places(currency: str) -> int:
    from rating.currency import minor_units

    return minor_units(currency)


def cmd_ingest(args: argparse.Namespace) -> int:
    settings = _prepare(args.data_dir)
    days = _landing_days(settings, args.first, args.last)
    if not days:
        _say(f"no landing days under {settings.landing_dir}")
        return 1
    run_ingest(settings, days)
    _print_summary(settings, days)
    _refresh_views(settings)
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    settings = _prepare(args.data_dir)
    from assets.billing import landing_window, month_bounds
    from rating.ingest import IngestRules

    first, last = month_bounds(args.period)
    # The month's events land on its days, a little ahead of it and late after it: every
    # such landing day already there is ingested too, so the month is rated on all of them.
    days = _landing_days(
        settings, *landing_window(first, last, IngestRules(lateness_days=settings.lateness_days))
    )
    if not [d for d in days if d <= last]:
        _say(f"no landing days for {args.period} under {settings.landing_dir}")
        return 1
    run_ingest(settings, days)
    _print_summary(settings, days)
    run_close(settings, [args.period], None if args.no_lock else args.by)
    _print_close(settings, [args.period])
    _refresh_views(settings)
    _say(
        f"{args.period} is rated, invoiced, scheduled, booked and reconciled "
        "(billable_usage, invoice_lines, revenue_schedule, journal_lines, reconciliation, "
        "exceptions)" + (", not locked (--no-lock)" if args.no_lock else " and locked")
    )
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    settings = _prepare(args.data_dir)
    from resources.control_db import ControlDb

    db = ControlDb(settings.control_db_url)
    db.migrate()
    db.dispose()
    approve_period(settings, args.period, args.entity, args.by)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    settings = _prepare(args.data_dir)
    if settings.erp_kind == "none":
        raise SystemExit(
            "no ERP configured: set METERCLOSE_ERP=tryton, METERCLOSE_ERP_URL, "
            "METERCLOSE_ERP_DATABASE, METERCLOSE_ERP_LOGIN and METERCLOSE_ERP_PASSWORD "
            "(the import files are written by the close either way)"
        )
    if args.retry_rejected:
        _requeue_rejected(settings, args.period, args.by)
    publish_period(settings, args.period)
    _refresh_views(settings)
    return 0


def _requeue_rejected(settings: Settings, period: str, requested_by: str) -> None:
    from resources.control_db import ControlDb
    from resources.erp.publish_ledger import PublishLedger

    adapter = build_erp(settings).adapter()
    db = ControlDb(settings.control_db_url)
    db.migrate()
    try:
        ids = PublishLedger(db.engine, adapter.target).requeue_rejected(period, requested_by)
    finally:
        adapter.close()
        db.dispose()
    _say(f"{len(ids)} rejected document(s) of {period} queued again by {requested_by}")


def build_erp(settings: Settings) -> Any:
    from dagster_project.resources import build_resources

    return build_resources(settings)["erp"]


def cmd_deliver_events(args: argparse.Namespace) -> int:
    settings = _prepare(args.data_dir)
    if not settings.webhook_url:
        raise SystemExit(
            "no webhook configured: set METERCLOSE_WEBHOOK_URL (and METERCLOSE_WEBHOOK_SECRET "
            "to sign); until then the events wait in the control database's event_outbox"
        )
    deliver_events(settings, args.period)
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    settings = _prepare(args.data_dir)
    from resources.control_db import ControlDb

    db = ControlDb(settings.control_db_url)
    db.migrate()
    db.dispose()
    lock_period(settings, args.period, args.by, _last_close_run(args.period))
    return 0


def cmd_reprocess(args: argparse.Namespace) -> int:
    settings = _prepare(args.data_dir)
    from resources.control_db import ControlDb, PeriodLockedError

    db = ControlDb(settings.control_db_url)
    db.migrate()
    try:
        booked_in = db.request_reprocess(args.period, args.by, args.reason)
    except PeriodLockedError as exc:
        raise SystemExit(str(exc)) from None
    finally:
        db.dispose()
    _say(
        f"{args.period} will be restated from today's events and reference data when "
        f"{booked_in} (the open period) is closed; the difference is billed and booked there "
        f"as prior-period adjustments, and {args.period} stays as it was locked. Close it "
        f"now with: meterclose close --period {booked_in}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _prepare(args.data_dir)
    if not (settings.landing_dir.is_dir() and (settings.reference_dir / "meters.yaml").exists()):
        from sampledata import generate

        _say(
            f"no sample data under {settings.data_dir}: generating {', '.join(DEMO_MONTHS)} "
            f"({DEMO_EVENTS} events a month, seed {DEMO_SEED})"
        )
        generate(settings.data_dir, list(DEMO_MONTHS), DEMO_EVENTS, DEMO_SEED)
    days = _landing_days(settings, None, None)
    started = time.perf_counter()
    run_ingest(settings, days)
    _print_summary(settings, days)
    periods = complete_months(days)
    run_close(settings, periods, DEMO_CONTROLLER)
    _print_close(settings, periods)
    _refresh_views(settings)
    _say(f"\ndone in {time.perf_counter() - started:.1f}s")
    _say(
        "\nwhere to look next:\n"
        f"  tables (Parquet)     {settings.warehouse_dir}/<table>/<day>.parquet\n"
        f"  tables (DuckDB)      duckdb {settings.warehouse_dir / 'meterclose.duckdb'}\n"
        f"  ERP import files     {settings.warehouse_dir / 'exports'}/<period>/v<NNN>/\n"
        f"  control database     {settings.control_db_url}\n"
        "  lineage, checks, runs  make ui   (dagster dev, then http://127.0.0.1:3000)\n"
        + (
            f"  the ERP              {settings.erp_kind} at {settings.erp_url}: "
            "erp_publication, erp_reconciliation, erp_exceptions"
            if settings.erp_kind != "none"
            else "  publish to an ERP    make tryton (a local Tryton), then make demo with the "
            "METERCLOSE_ERP_* it prints"
        )
    )
    return 0


def _print_summary(settings: Settings, days: Sequence[date]) -> None:
    from rich.console import Console
    from rich.table import Table

    from resources.control_db import ControlDb

    db = ControlDb(settings.control_db_url)
    records = {r.received_date: r for r in db.days(min(days), max(days))}
    totals = db.totals_by_day(min(days), max(days))
    db.dispose()
    by_month: dict[str, list[int]] = {}
    for day in days:
        if day not in records:
            continue
        t = totals[day]
        row = by_month.setdefault(f"{day:%Y-%m}", [0, 0, 0, 0, 0])
        row[0] += 1
        for i, key in enumerate(("raw_lines", "accepted", "duplicates", "quarantined"), start=1):
            row[i] += t[key]
    table = Table(title="Ingested landing days")
    for column in ("landing month", "days", "raw lines", "accepted", "duplicates", "quarantined"):
        table.add_column(column, justify="right")
    for month, row in sorted(by_month.items()):
        table.add_row(month, *(f"{v:,}" for v in row))
    grand = [sum(r[i] for r in by_month.values()) for i in range(5)]
    table.add_row("total", *(f"{v:,}" for v in grand), style="bold")
    Console().print(table)
    balanced = grand[1] == grand[2] + grand[3] + grand[4]
    _say(
        f"every line accounted for: {grand[1]:,} = {grand[2]:,} accepted + {grand[3]:,} "
        f"duplicates + {grand[4]:,} quarantined ({'balanced' if balanced else 'NOT BALANCED'})"
    )
    manifest = settings.data_dir / "manifest" / "lines.parquet"
    if manifest.exists():
        outcome = compare_manifest(settings, days)
        _say(f"generator manifest: {outcome.description}")
        if not outcome.passed:
            _say(str(outcome.metadata["first_mismatches"]))


def compare_manifest(settings: Settings, days: Sequence[date]) -> CheckOutcome:
    """The ingest outcome of every line against the generator's ground truth."""
    import polars as pl

    from checks.manifest import actual_outcomes, compare_with_manifest

    first, last = min(days), max(days)

    def scan(table: str) -> pl.LazyFrame:
        return pl.scan_parquet(settings.warehouse_dir / table / "*.parquet").filter(
            pl.col("received_date").is_between(first, last)
        )

    manifest = pl.scan_parquet(settings.data_dir / "manifest" / "lines.parquet").filter(
        pl.col("received_date").is_between(first, last)
    )
    actual = actual_outcomes(
        scan("usage_events"), scan("quarantined_events"), scan("duplicate_events")
    )
    return compare_with_manifest(manifest, actual)


def _by_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--by``: the person a command records, for the audit trail."""
    parser.add_argument(
        "--by",
        default=os.environ.get("METERCLOSE_CONTROLLER") or getpass.getuser(),
        help=f"who {what} (default: $METERCLOSE_CONTROLLER, then the login name)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meterclose", description=__doc__)
    parser.add_argument(
        "--data-dir",
        help="data root (default: $METERCLOSE_DATA_DIR, then data/ in the repository)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the pipeline on the sample data set")
    demo.set_defaults(handler=cmd_demo)

    gen = commands.add_parser("generate", help="generate reference data and telemetry")
    gen.add_argument("--month", action="append", type=_month, required=True, help="YYYY-MM")
    gen.add_argument("--events", type=int, default=DEMO_EVENTS, help="base events per month")
    gen.add_argument("--seed", type=int, default=DEMO_SEED)
    gen.add_argument("--out", help="output root (default: the data root)")
    gen.set_defaults(handler=cmd_generate)

    ingest = commands.add_parser("ingest", help="ingest landing days through Dagster")
    ingest.add_argument("--from", dest="first", type=_day, help="first landing day")
    ingest.add_argument("--to", dest="last", type=_day, help="last landing day")
    ingest.set_defaults(handler=cmd_ingest)

    close = commands.add_parser("close", help="materialise a month's partitions and its close")
    close.add_argument("--period", type=_month, required=True, help="YYYY-MM")
    _by_argument(close, "closes the month, recorded with its lock")
    close.add_argument(
        "--no-lock",
        action="store_true",
        help="a preliminary close: compute and check everything, lock nothing",
    )
    close.set_defaults(handler=cmd_close)

    approve = commands.add_parser(
        "approve", help="approve a closed month's journals, per entity, before they are sent"
    )
    approve.add_argument("--period", type=_month, required=True, help="YYYY-MM")
    approve.add_argument(
        "--entity", action="append", help="legal entity (repeatable; default: all of them)"
    )
    _by_argument(approve, "approves")
    approve.set_defaults(handler=cmd_approve)

    publish = commands.add_parser(
        "publish",
        help="send a closed month's approved journals to the ERP, exactly once; resumable",
    )
    publish.add_argument("--period", type=_month, required=True, help="YYYY-MM")
    publish.add_argument(
        "--retry-rejected",
        action="store_true",
        help="send the documents the ERP rejected again (once the cause is fixed there)",
    )
    _by_argument(publish, "asks to send rejected documents again")
    publish.set_defaults(handler=cmd_publish)

    deliver = commands.add_parser(
        "deliver-events",
        help="send queued business events to the webhook, once each in effect; resumable",
    )
    deliver.add_argument("--period", type=_month, help="YYYY-MM (default: every waiting event)")
    deliver.set_defaults(handler=cmd_deliver_events)

    lock = commands.add_parser(
        "lock", help="lock a month closed by the schedule or the UI, once reviewed"
    )
    lock.add_argument("--period", type=_month, required=True, help="YYYY-MM")
    _by_argument(lock, "locks the month")
    lock.set_defaults(handler=cmd_lock)

    reprocess = commands.add_parser(
        "reprocess", help="restate a locked month; the difference is booked in the open period"
    )
    reprocess.add_argument("--period", type=_month, required=True, help="YYYY-MM")
    reprocess.add_argument("--reason", required=True, help="why, for the audit trail")
    _by_argument(reprocess, "asks")
    reprocess.set_defaults(handler=cmd_reprocess)

    # --data-dir is accepted after the command too, as users type it.
    for sub in (demo, gen, ingest, close, approve, publish, deliver, lock, reprocess):
        sub.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
