"""The code location loads, with the jobs, schedules, sensors and checks we promise by name."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from checks import names
from dagster_project.definitions import defs


def test_assets_and_blocking_checks() -> None:
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "landing_files",
        "usage_events",
        "quarantined_events",
        "duplicate_events",
        "daily_usage",
        "landing_calendar",
        "billable_usage",
        "invoice_lines",
        "prepaid_balances",
        "revenue_schedule",
        "journal_lines",
        "reconciliation",
        "exceptions",
        "erp_exports",
        "business_events",
        "erp_publication",
        "erp_reconciliation",
        "erp_exceptions",
        "close_record",
        "restatement",
    }
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert checks == {
        ("usage_events", names.USAGE_EVENTS_SCHEMA),
        ("usage_events", names.LINES_ACCOUNTED_FOR),
        ("quarantined_events", names.QUARANTINED_EVENTS_SCHEMA),
        ("duplicate_events", names.DUPLICATE_EVENTS_SCHEMA),
        ("daily_usage", names.DAILY_USAGE_SCHEMA),
        ("daily_usage", names.DAILY_USAGE_TIES_TO_EVENTS),
        ("billable_usage", names.BILLABLE_USAGE_SCHEMA),
        ("billable_usage", names.BILLABLE_USAGE_BREAKDOWN_TIES),
        ("invoice_lines", names.INVOICE_LINES_SCHEMA),
        ("invoice_lines", names.INVOICE_LINES_TIE_TO_BILLABLE_USAGE),
        ("prepaid_balances", names.PREPAID_BALANCES_SCHEMA),
        ("prepaid_balances", names.PREPAID_BALANCES_TIE_TO_DRAWDOWNS),
        ("revenue_schedule", names.REVENUE_SCHEDULE_SCHEMA),
        ("journal_lines", names.JOURNAL_LINES_SCHEMA),
        ("journal_lines", names.JOURNALS_BALANCE),
        ("journal_lines", names.JOURNAL_LINES_MAPPED),
        ("reconciliation", names.RECONCILIATION_NO_UNEXPLAINED_VARIANCE),
        ("exceptions", names.EXCEPTIONS_SCHEMA),
        ("erp_exports", names.ERP_EXPORTS_BALANCE),
        ("erp_reconciliation", names.ERP_RECONCILIATION_NO_UNEXPLAINED_VARIANCE),
        ("erp_exceptions", names.ERP_EXCEPTIONS_SCHEMA),
        ("quarantined_events", names.QUARANTINE_RATE),
        ("landing_files", "freshness_check"),
    }
    # Every check on data the close computes blocks what follows it; the landing checks
    # alert and leave the decision to the close's landing calendar.
    alerts = {names.QUARANTINE_RATE, "freshness_check"}
    for key in graph.asset_check_keys:
        assert graph.get_check_spec(key).blocking == (key.name not in alerts), key
    # The source of everything, and what the close is downstream of.
    assert graph.get(dg.AssetKey("landing_files")).is_external
    assert dg.AssetKey("landing_files") in graph.get(dg.AssetKey("usage_events")).parent_keys


def test_jobs_schedules_and_sensors() -> None:
    assert defs.resolve_job_def("ingest_job").partitions_def is not None
    billing = defs.resolve_job_def("close_job")
    assert billing.partitions_def is not None
    # Invoicing runs after rating, in the same run, gated by its blocking checks.
    steps = {n.name for n in billing.graph.nodes}
    # The close computes and checks, behind its landing calendar's gate; publishing is
    # its own job, after approval.
    assert "erp_publication" not in steps
    assert {
        "landing_calendar",
        "close_record",
        "billable_usage",
        "invoice_lines",
        "revenue_schedule",
        "journal_lines",
        "reconciliation",
    } <= steps
    schedule = defs.resolve_schedule_def("nightly_ingest_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.job_name == "ingest_job"
    assert {s.name for s in defs.schedules or []} == {
        "nightly_ingest_schedule",
        "month_end_close_schedule",
    }
    for job in ("approve_job", "lock_job", "reprocess_job"):
        assert defs.resolve_job_def(job).partitions_def is not None, job
    assert defs.resolve_job_def("confirm_day_job").partitions_def is None
    sensors = {s.name for s in defs.sensors or []}
    assert sensors == {
        "landing_files_sensor",
        "stale_dedup_window_sensor",
        "landing_freshness_sensor",
    }


def test_nightly_schedule_targets_yesterdays_landing_day() -> None:
    schedule = defs.resolve_schedule_def("nightly_ingest_schedule")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 10, 5, 2, 0, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    requests = schedule.evaluate_tick(context).run_requests or []
    assert [r.partition_key for r in requests] == ["2026-10-04"]


def test_month_end_close_schedule_targets_the_previous_month() -> None:
    schedule = defs.resolve_schedule_def("month_end_close_schedule")
    assert schedule.cron_schedule == "0 6 5 * *"  # METERCLOSE_CLOSE_DAY, 5 by default
    assert schedule.job_name == "close_job"
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 5, 6, 0, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    requests = schedule.evaluate_tick(context).run_requests or []
    assert [r.partition_key for r in requests] == ["2026-10"]
    assert requests[0].run_config == {
        "ops": {"landing_calendar": {"config": {"prepared_by": "meterclose-schedule"}}}
    }


def test_reprocess_job_refuses_a_month_that_is_not_locked(tmp_path: object) -> None:
    from pathlib import Path

    from dagster_project.definitions import build_definitions
    from dagster_project.settings import Settings
    from resources.control_db import ControlDb

    root = Path(str(tmp_path))
    settings = Settings(
        data_dir=root,
        warehouse_dir=root / "warehouse",
        control_db_url=f"sqlite:///{root / 'control.db'}",
        reference_url=None,
        lateness_days=35,
    )
    db = ControlDb(settings.control_db_url)
    db.migrate()
    db.record_lock("2026-09", "alice", "run-1", "digest", "snapshot")
    job = build_definitions(settings).resolve_job_def("reprocess_job")
    config = {"reason": "late SLA credit", "requested_by": "carol"}
    instance = dg.DagsterInstance.ephemeral()
    run_config = {"ops": {"request_reprocessing": {"config": config}}}
    # An open month is closed again, not reprocessed: refused, not failed, saying so; no
    # request is recorded and the restatement is not materialized.
    refused = job.execute_in_process(
        run_config=run_config, partition_key="2026-10", instance=instance
    )
    assert refused.success
    assert refused.get_asset_materialization_events() == []
    run = instance.get_run_by_id(refused.run_id)
    assert run is not None and run.tags["meterclose/refused"].startswith(
        "2026-10 is not locked: there is nothing to restate; close it again instead"
    )
    assert db.reprocess_requests() == []
    db.dispose()
