"""The ``meterclose`` command: demo, generate, ingest and close, all through Dagster."""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dagster_project import report
from dagster_project.instance import prepare_instance
from dagster_project.settings import Settings, load_settings

if TYPE_CHECKING:
    from dagster import DagsterInstance, DagsterRun

    from resources.control_db import ControlDb

DEMO_MONTHS = ("2026-09", "2026-10")
DEMO_EVENTS = 4000
DEMO_SEED = 7
# The demo's two people: one prepares each close, the other approves and locks it.
DEMO_PREPARER = "demo-preparer"
DEMO_CONTROLLER = "meterclose-demo"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _month(value: str) -> str:
    from rating.periods import PeriodError, parse_period

    try:
        return parse_period(value)
    except PeriodError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    prepare_instance()
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


def run_close(settings: Settings, period: str, prepared_by: str) -> str:
    """Close a month through close_job (compute and check; nothing is approved or locked)."""
    return _execute(
        settings,
        "close_job",
        f"closing {period} (prepared by {prepared_by})",
        partition_key=period,
        run_config={"ops": {"landing_calendar": {"config": {"prepared_by": prepared_by}}}},
    )


def approve_period(
    settings: Settings, period: str, entities: Sequence[str] | None, approved_by: str
) -> None:
    """Approve a closed month's journals for some entities (all when None), through
    approve_job."""
    config: dict[str, Any] = {"approved_by": approved_by}
    if entities:
        config["entities"] = list(entities)
    _execute(
        settings,
        "approve_job",
        f"approving {period} as {approved_by}",
        partition_key=period,
        run_config={"ops": {"approve_period_journals": {"config": config}}},
    )
    _say(f"{period} journals approved by {approved_by}")


def publish_period(settings: Settings, period: str) -> None:
    """Publish a closed month's approved journals to the ERP, when one is configured."""
    if settings.erp_kind == "none":
        return
    from lifecycle.transitions import may_publish

    decision = _with_db(settings, lambda db: may_publish(settings, db, period))
    if not decision.allowed:
        raise SystemExit(str(decision))
    _execute(
        settings,
        "publish_job",
        f"publishing {period} to the ERP ({settings.erp_kind} at {settings.erp_url})",
        partition_key=period,
    )
    report.print_publication(settings, [period])


def lock_period(settings: Settings, period: str, locked_by: str) -> None:
    """Lock a month through lock_job (the rules: lifecycle.rules.may_lock)."""
    _execute(
        settings,
        "lock_job",
        f"locking {period} as {locked_by}",
        partition_key=period,
        run_config={"ops": {"lock_period": {"config": {"locked_by": locked_by}}}},
    )
    lock = _with_db(settings, lambda db: db.lock(period))
    assert lock is not None
    _say(f"{period} locked by {lock.locked_by}; reference data kept in {lock.snapshot_path}")


def deliver_events(settings: Settings, period: str | None) -> None:
    """Deliver waiting business events to the webhook, when one is configured."""
    if not settings.webhook_url:
        return
    config = {"period": period or ""}
    _execute(
        settings,
        "deliver_events_job",
        "delivering business events",
        run_config={"ops": {"deliver_business_events": {"config": config}}},
    )


T = TypeVar("T")


def _with_db(settings: Settings, use: Callable[[ControlDb], T]) -> T:
    from resources.control_db import ControlDb

    db = ControlDb(settings.control_db_url)
    db.migrate()
    try:
        return use(db)
    finally:
        db.dispose()


def _execute(settings: Settings, job_name: str, what: str, **kwargs: Any) -> str:
    """Run a job in process on the shared instance; stop, saying why in one line, if the
    rules refused it, it failed or a check failed."""
    import dagster as dg

    from assets.gates import REFUSED_TAG
    from dagster_project.definitions import build_definitions
    from dagster_project.jobs import ACTIVE_RUN_STATUSES, PARTITION_TAG

    _say(what)
    instance = dg.DagsterInstance.get()
    definitions = build_definitions(settings)
    job = definitions.resolve_job_def(job_name)
    # The run queue keeps two runs of one partition apart in the UI; a run made here does
    # not pass through it, so it asks the instance itself.
    partition = kwargs.get("partition_key")
    if partition:
        active = instance.get_runs(
            filters=dg.RunsFilter(statuses=ACTIVE_RUN_STATUSES, tags={PARTITION_TAG: partition})
        )
        busy = [run for run in active if not _orphaned(instance, run)]
        if busy:
            raise SystemExit(
                f"{partition} is busy: run {busy[0].run_id} ({busy[0].job_name}) is "
                f"{busy[0].status.value.lower()}; wait for it to finish (see the Dagster UI)"
            )
    kwargs["tags"] = {**kwargs.get("tags", {}), CLI_PID_TAG: str(os.getpid()), CLI_HOST_TAG: HOST}
    result = job.execute_in_process(
        instance=instance,
        run_config={
            **kwargs.pop("run_config", {}),
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        },
        raise_on_error=False,
        **kwargs,
    )
    run = instance.get_run_by_id(result.run_id)
    refused = run.tags.get(REFUSED_TAG) if run else None
    if refused:
        raise SystemExit(refused)
    if not result.success:
        message = _failure_message(result.all_events)
        raise SystemExit(f"{what} failed (run {result.run_id}): {message}")
    graph = definitions.resolve_asset_graph()
    evaluations = result.get_asset_check_evaluations()
    for alert in (c for c in evaluations if not c.passed):
        if not graph.get_check_spec(alert.asset_check_key).blocking:
            _say(f"{alert.severity.value.lower()}: {alert.check_name}: {alert.description}")
    failed = [
        c for c in evaluations if not c.passed and graph.get_check_spec(c.asset_check_key).blocking
    ]
    if failed:
        raise SystemExit(
            f"{what}: blocking checks failed: "
            + "; ".join(f"{c.check_name}: {c.description}" for c in failed)
        )
    return str(result.run_id)


# A run made by this CLI says which process runs it, so that one left behind by a killed
# process is not taken for a run under way.
CLI_PID_TAG = "meterclose/cli_pid"
CLI_HOST_TAG = "meterclose/cli_host"
HOST = socket.gethostname()


def _orphaned(instance: DagsterInstance, run: DagsterRun) -> bool:
    """A CLI run on this machine whose process is gone: marked failed, so it stops holding
    its partition (runs from the UI are watched by Dagster's own run monitoring)."""
    pid = run.tags.get(CLI_PID_TAG)
    if pid is None or run.tags.get(CLI_HOST_TAG) != HOST:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        instance.report_run_failed(
            run, f"the meterclose process ({pid}) that ran it ended without finishing it"
        )
        return True
    except PermissionError:
        return False
    return False


def _failure_message(events: Sequence[Any]) -> str:
    """What went wrong, in the words of the error that stopped the run's first failed step
    (not Dagster's "Execution of step … failed")."""
    for event in events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            # Dagster wraps the step's own error ("Error occurred while executing op …"):
            # the innermost cause is the one that says what is wrong.
            while error is not None and error.cause is not None:
                error = error.cause
            if error is not None:
                step = event.step_key or "a step"
                return f"{step}: {error.message.strip().splitlines()[-1]}"
        if event.is_failure:
            return str(event.message)
    return "see the run in the Dagster UI"


def months_to_close(settings: Settings, days: Sequence[date]) -> list[str]:
    """Every month from the first landing day's through the last landing day's or the
    last that has ended, whichever is later: the rules say which of them may close."""
    from rating.periods import period_of, periods_between, previous_period

    last = max(period_of(max(days)), previous_period(period_of(settings.today())))
    return periods_between(period_of(min(days)), last)


def _refresh_views(settings: Settings) -> None:
    from resources.views import refresh_views

    views = refresh_views(settings.warehouse_dir)
    _say(f"DuckDB views refreshed: {', '.join(views)}")


def cmd_ingest(args: argparse.Namespace) -> int:
    settings = _prepare(args.data_dir)
    days = _landing_days(settings, args.first, args.last)
    if not days:
        _say(f"no landing days under {settings.landing_dir}")
        return 1
    run_ingest(settings, days)
    report.print_summary(settings, days)
    _refresh_views(settings)
    return 0


def _ingest_for_close(settings: Settings, period: str) -> list[date]:
    """Ingest every landing day already there that the month's events can arrive on: a
    little ahead of it, its own days, and late ones after it."""
    from assets.billing import landing_window
    from rating.ingest import IngestRules
    from rating.periods import month_bounds

    first, last = month_bounds(period)
    rules = IngestRules(lateness_days=settings.lateness_days)
    days = _landing_days(settings, *landing_window(first, last, rules))
    if days:
        run_ingest(settings, days)
        report.print_summary(settings, days)
    return days


def cmd_close(args: argparse.Namespace) -> int:
    settings = _prepare(args.data_dir)
    _ingest_for_close(settings, args.period)
    run_close(settings, args.period, args.by)
    report.print_close(settings, [args.period])
    _refresh_views(settings)
    _say(
        f"{args.period} is prepared by {args.by}: rated, invoiced, scheduled, booked and "
        "reconciled. Next: another person approves it "
        f"(meterclose approve --period {args.period} --by …), then publish and lock"
    )
    return 0


def cmd_confirm_day(args: argparse.Namespace) -> int:
    settings = _prepare(args.data_dir)
    config = {"day": args.day.isoformat(), "reason": args.reason, "confirmed_by": args.by}
    _execute(
        settings,
        "confirm_day_job",
        f"confirming landing day {args.day} as {args.by}",
        run_config={"ops": {"confirm_landing_day": {"config": config}}},
    )
    _say(f"landing day {args.day} confirmed complete as it stands by {args.by}: {args.reason}")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    settings = _prepare(args.data_dir)
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
    lock_period(settings, args.period, args.by)
    return 0


def cmd_reprocess(args: argparse.Namespace) -> int:
    settings = _prepare(args.data_dir)
    config = {"reason": args.reason, "requested_by": args.by}
    _execute(
        settings,
        "reprocess_job",
        f"asking for {args.period} to be restated",
        partition_key=args.period,
        run_config={"ops": {"request_reprocessing": {"config": config}}},
    )
    booked_in = _with_db(settings, lambda db: db.open_period())
    report.print_restatement(settings, args.period, str(booked_in))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = _prepare(args.data_dir)
    days = _landing_days(settings, None, None)
    if not days:
        _say(f"no landing days under {settings.landing_dir}")
        return 1
    report.print_status(settings, months_to_close(settings, days))
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
    from lifecycle.transitions import closable_periods

    days = _landing_days(settings, None, None)
    started = time.perf_counter()
    run_ingest(settings, days)
    report.print_summary(settings, days)
    answers = _with_db(
        settings, lambda db: closable_periods(settings, db, months_to_close(settings, days))
    )
    closed: list[str] = []
    for period, decision in answers:
        lock = _with_db(settings, lambda db, p=period: db.lock(p))  # type: ignore[misc]
        if lock is not None:
            _say(
                f"{period} is locked (by {lock.locked_by} at {lock.locked_at:%Y-%m-%d %H:%M} "
                "UTC): left as it is, and not published again"
            )
            continue
        if not decision.allowed:
            _say(f"{period} not closed: {decision}")
            continue
        # Two people, as segregation of duties asks: one prepares, another approves.
        run_close(settings, period, DEMO_PREPARER)
        approve_period(settings, period, None, DEMO_CONTROLLER)
        publish_period(settings, period)
        lock_period(settings, period, DEMO_CONTROLLER)
        closed.append(period)
    deliver_events(settings, None)
    if closed:
        report.print_close(settings, closed)
    _refresh_views(settings)
    _say(f"\ndone in {time.perf_counter() - started:.1f}s")
    published = (
        f"published {', '.join(closed)} to {settings.erp_kind} at {settings.erp_url}"
        if settings.erp_kind != "none" and closed
        else "published nothing to an ERP"
        + ("" if settings.erp_kind != "none" else " (none configured: import files only)")
    )
    _say(
        f"closed, approved and locked: {', '.join(closed) or 'nothing'}; {published}\n"
        "\nwhere to look next:\n"
        f"  tables (Parquet)     {settings.warehouse_dir}/<table>/<day>.parquet\n"
        f"  tables (DuckDB)      duckdb {settings.warehouse_dir / 'meterclose.duckdb'}\n"
        f"  ERP import files     {settings.warehouse_dir / 'exports'}/<period>/v<NNN>/\n"
        f"  control database     {settings.control_db_url}\n"
        "  the months' state    meterclose status\n"
        "  lineage, checks, runs  make ui   (dagster dev, then http://127.0.0.1:3000)\n"
        + (
            f"  the ERP              {settings.erp_kind} at {settings.erp_url}: "
            "erp_publication, erp_reconciliation, erp_exceptions"
            if settings.erp_kind != "none"
            else "  publish to an ERP    make tryton (a local Tryton), then make clean and "
            "make demo with the METERCLOSE_ERP_* it prints"
        )
    )
    return 0


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

    close = commands.add_parser(
        "close", help="ingest a month's landing days and prepare its close (compute, check)"
    )
    close.add_argument("--period", type=_month, required=True, help="YYYY-MM")
    _by_argument(close, "prepares the close (the approver must be someone else)")
    close.set_defaults(handler=cmd_close)

    confirm = commands.add_parser(
        "confirm-day", help="confirm a landing day complete as it stands (no files, partial)"
    )
    confirm.add_argument("--day", type=_day, required=True, help="YYYY-MM-DD")
    confirm.add_argument("--reason", required=True, help="why, for the audit trail")
    _by_argument(confirm, "confirms the day")
    confirm.set_defaults(handler=cmd_confirm_day)

    status = commands.add_parser(
        "status", help="each month's state, what blocks its next step, and who did what"
    )
    status.set_defaults(handler=cmd_status)

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
    for sub in (
        demo, gen, ingest, close, confirm, status, approve, publish, deliver, lock, reprocess
    ):  # fmt: skip
        sub.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
