"""The close is safe from the Dagster UI, in Chromium.

- A close launched from the launchpad's partition picker on a locked month, or on a month
  with no landing data, is refused in one line (run tag and log), materializes nothing,
  evaluates no check, and leaves partitions, files and the control database as they were.
- ``lock_job`` launched from the UI locks a prepared and approved month as the person
  named in its launchpad config; a later close of that month is refused.
- ``reprocess_job`` launched from the partition picker on a locked month books the
  difference late events make in the close of the open period, to the cent, and the locked
  month's own partitions are not rewritten.

One data root and one ``dagster dev`` serve the module: three generated months (2026-09 to
2026-11, landing days through 2026-12-05, 300 events a month); September closed by
PREPARER, approved and locked by APPROVER, all through the CLI. Partitions start on
2026-08-01, and August has no landing files. The product's clock is the fixtures'
2026-12-06, after every month's landing cutoff.

The tests share that state; each passes alone or in any order. In this file's order the
reprocess test runs before the lock test, so October is closed once (by the reprocess
test) and the lock test only approves and locks it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pytest
import yaml

from tests.browser import gql, ui
from tests.browser.server import DagsterUi, UiEnv

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.browser.conftest import DagsterUiFactory, Screenshot, UiEnvFactory

pytestmark = pytest.mark.browser

FIRST_DAY = "2026-08-01"  # partitions start here; August itself has no landing files
GENERATED_MONTHS = ("2026-09", "2026-10", "2026-11")
LOCKED = "2026-09"  # closed, approved and locked by the module's setup
NO_DATA = "2026-08"
EVENTS_PER_MONTH = "300"
SEED = "3"

PREPARER = "alice"  # prepares every close
APPROVER = "bob"  # approves (never the preparer) and locks September
LOCKER = "carol"  # locks a month from the UI
REQUESTER = "dana"  # asks from the UI for September to be reprocessed
INTRUDER = "mallory"  # tries to close months that must not close

CLOSE_JOB = "close_job"
REFUSED_TAG = "meterclose/refused"
PREPARED_BY_TAG = "meterclose/prepared_by"

ENV = {
    # About ten lines land per day at 300 events a month, so the one faulty line the
    # generator plants in a day is 10 % of it: above the default 5 % quarantine threshold
    # (a close would then wait for a controller to confirm those days).
    "METERCLOSE_QUARANTINE_ERROR_RATE": "0.5",
    "COLUMNS": "200",  # `meterclose status` prints its table unwrapped
}

# Late events for September: active users of one contract, stamped on September 30th and
# landing on November 2nd (33 days later: inside the 35-day lateness limit, so September's
# late events; and after September was locked).
LATE_LANDING_DAY = "2026-11-02"
LATE_EVENT_TIME = "2026-09-30T12:00:00Z"
LATE_USERS = 4
LATE_METER = "active_users"
LATE_EVENT_TYPE = "user.active"


# --- module setup -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ui_env(ui_env_factory: UiEnvFactory) -> UiEnv:
    env = ui_env_factory(first_day=FIRST_DAY, extra_env=ENV)
    months = [arg for month in GENERATED_MONTHS for arg in ("--month", month)]
    env.run_cli(
        "generate", *months, "--events", EVENTS_PER_MONTH, "--seed", SEED,
        "--out", str(env.data_dir),
    )  # fmt: skip
    landing = env.data_dir / "landing" / "usage"
    assert not list(landing.glob(f"{NO_DATA}-*")), "August must have no landing files"
    env.run_cli("close", "--period", LOCKED, "--by", PREPARER)
    env.run_cli("approve", "--period", LOCKED, "--by", APPROVER)
    env.run_cli("lock", "--period", LOCKED, "--by", APPROVER)
    assert locks(env) == {LOCKED: APPROVER}
    return env


@pytest.fixture(scope="module")
def dagster(ui_env: UiEnv, dagster_ui_factory: DagsterUiFactory) -> DagsterUi:
    return dagster_ui_factory(ui_env)


@pytest.fixture(scope="module")
def close_assets(dagster: DagsterUi) -> list[str]:
    """Every asset close_job materializes, as the server lists them."""
    assets = gql.job_asset_keys(dagster, CLOSE_JOB)
    assert {"landing_calendar", "billable_usage", "invoice_lines", "close_record"} <= set(assets), (
        assets
    )
    return assets


@pytest.fixture(scope="module")
def approved_month(ui_env: UiEnv) -> str:
    """The open period (October, or November once October is locked), prepared by
    PREPARER — unless a test closed it already — and approved by APPROVER."""
    period = open_period(ui_env)
    with control_db(ui_env) as db:
        prepared = db.execute(
            "SELECT count(*) FROM period_transition WHERE period = ? AND transition = ?",
            (period, "prepared"),
        ).fetchone()[0]
    if not prepared:
        ui_env.run_cli("close", "--period", period, "--by", PREPARER)
    ui_env.run_cli("approve", "--period", period, "--by", APPROVER)
    return period


# --- what the tests read ----------------------------------------------------------------


def control_db(env: UiEnv) -> closing[sqlite3.Connection]:
    """The control database (SQLite under the data root), to read."""
    path = env.data_dir / "control.db"
    assert path.exists(), path
    return closing(sqlite3.connect(path))


def control_db_dump(env: UiEnv) -> list[str]:
    """Every table and row of the control database, as SQL text."""
    with control_db(env) as db:
        return list(db.iterdump())


def locks(env: UiEnv) -> dict[str, str]:
    """Locked month -> who locked it."""
    with control_db(env) as db:
        return dict(db.execute("SELECT period, locked_by FROM period_lock ORDER BY period"))


def next_month(period: str) -> str:
    year, month = map(int, period.split("-"))
    return f"{year + month // 12}-{month % 12 + 1:02d}"


def open_period(env: UiEnv) -> str:
    """The month after the last locked one (months lock in order)."""
    return next_month(max(locks(env)))


def file_digests(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_unchanged(before: dict[str, str], after: dict[str, str]) -> None:
    """Every file of ``before`` is still there, byte for byte (files may have been added:
    a new asset's partition is not a rewrite)."""
    changed = {
        path: after.get(path, "gone")
        for path, digest in before.items()
        if after.get(path) != digest
    }
    assert not changed, f"rewritten or removed: {sorted(changed)}"


@dataclass(frozen=True)
class PartitionState:
    """A partition's status in the UI and the run that last materialized it."""

    status: str
    latest: gql.Materialization | None


def partition_states(
    dagster: DagsterUi, assets: list[str], period: str
) -> dict[str, PartitionState]:
    return {
        asset: PartitionState(
            gql.partition_status(dagster, asset, period),
            gql.latest_materialization(dagster, asset, period),
        )
        for asset in assets
    }


def check_history(
    dagster: DagsterUi, assets: list[str]
) -> dict[tuple[str, str], list[gql.CheckExecution]]:
    """(asset, check) -> every execution of the check, newest first."""
    return {
        (asset, check): gql.check_executions(dagster, asset, check)
        for asset in assets
        for check in gql.asset_check_names(dagster, asset)
    }


def launch(
    page: Page,
    dagster: DagsterUi,
    job: str,
    partition: str,
    screenshot: Screenshot,
    **config: str,
) -> gql.RunInfo:
    """Launch ``job`` from its launchpad for ``partition`` (picked in the partition
    picker) with ``config`` for the op that takes it; wait until the run has finished."""
    run = ui.launch_and_wait(
        page,
        dagster,
        job,
        partition=partition,
        config_yaml=gql.op_config_yaml(dagster, job, **config),
        screenshot=screenshot,
    )
    assert run.job_name == job
    assert run.partition == partition, run.tags
    assert run.tags.get("dagster/from_ui") == "true", run.tags
    return run


def assert_refused(dagster: DagsterUi, run: gql.RunInfo, *words: str) -> str:
    """The run ended SUCCESS, tagged refused with a reason naming ``words``, the same line
    in its log; it materialized nothing, evaluated no check and failed no step. The
    reason."""
    events = gql.run_events(dagster, run.run_id)
    assert run.status == "SUCCESS", (run, gql.step_failures(events))
    reason = run.tags.get(REFUSED_TAG)
    assert reason, f"run {run.run_id} is not tagged {REFUSED_TAG}: {run.tags}"
    for word in words:
        assert word in reason, f"{word!r} not in the refusal: {reason}"
    assert PREPARED_BY_TAG not in run.tags, "refused before the preparer was recorded"
    assert reason in gql.log_messages(events, level="WARNING")
    assert gql.materialized_assets(events) == []
    assert gql.check_results(events) == {}
    assert gql.step_failures(events) == {}
    return reason


def assert_checks_untouched(
    before: dict[tuple[str, str], list[gql.CheckExecution]],
    after: dict[tuple[str, str], list[gql.CheckExecution]],
    run_id: str,
    period: str,
) -> None:
    """The run recorded no check evaluation, and every other run's executions are as they
    were. (Dagster records a planned execution of each of the job's checks for the run's
    partition when the run starts; the refused run leaves those SKIPPED, unevaluated.)"""
    assert after.keys() == before.keys()
    for key, executions in after.items():
        by_run = [e for e in executions if e.run_id == run_id]
        assert all(not e.evaluated and e.status == "SKIPPED" for e in by_run), (key, by_run)
        assert all(e.partition == period for e in by_run), (key, by_run)
        assert [e for e in executions if e.run_id != run_id] == before[key], key


def status_row(status_output: str, period: str) -> dict[str, str]:
    """One month's row of `meterclose status`'s table: column -> cell."""
    lines = status_output.splitlines()
    header = next(line for line in lines if line.startswith("┃") and " period " in line)
    columns = [c.strip() for c in header.strip("┃").split("┃")]
    row = next(line for line in lines if line.startswith(f"│ {period} "))
    return dict(zip(columns, (c.strip() for c in row.strip("│").split("│")), strict=True))


@dataclass(frozen=True)
class UsageCharge:
    """A contract billed per unit of a meter from the first unit, on one price."""

    contract_id: str
    customer_id: str
    charge_id: str
    currency: str
    unit_amount: Decimal


def per_unit_charge(reference: Path, meter: str, period: str) -> UsageCharge:
    """The first contract (by id) in force all through ``period`` whose plan bills
    ``meter`` per unit with no included units or minimum, and that has no amendment,
    commitment or prepaid credit: each more unit adds exactly its unit price."""
    plans = {
        p["plan_id"]: p for p in yaml.safe_load((reference / "plans.yaml").read_text())["plans"]
    }
    contracts = yaml.safe_load((reference / "contracts.yaml").read_text())["contracts"]
    first = date.fromisoformat(f"{period}-01")
    next_first = date.fromisoformat(f"{next_month(period)}-01")
    for contract in sorted(contracts, key=lambda c: c["contract_id"]):
        plan = plans[contract["plan_id"]]
        simple = [
            charge
            for charge in plan.get("usage") or []
            if charge["meter"] == meter
            and charge["model"] == "per_unit"
            and not charge.get("included_units")
            and not charge.get("minimum_amount")
            and not charge.get("group_by")
        ]
        end = contract.get("end_date")
        if (
            simple
            and date.fromisoformat(str(contract["start_date"])) <= first
            and (end is None or date.fromisoformat(str(end)) >= next_first)
            and not contract.get("amendments")
            and not contract.get("minimum_commitment")
            and not contract.get("prepaid_credit")
            and not contract.get("co_term_with")
        ):
            return UsageCharge(
                contract_id=contract["contract_id"],
                customer_id=contract["customer_id"],
                charge_id=simple[0]["charge_id"],
                currency=plan["currency"],
                unit_amount=Decimal(str(simple[0]["unit_amount"])),
            )
    raise AssertionError(f"no contract bills {meter} per unit from the first unit in {period}")


def late_events(charge: UsageCharge) -> Iterator[str]:
    """LATE_USERS CloudEvents lines, each a new active user of the charge's customer."""
    for n in range(1, LATE_USERS + 1):
        yield json.dumps(
            {
                "specversion": "1.0",
                "id": f"late-restatement-{n}",
                "source": "//ingest.example.com/test-ui-close",
                "type": LATE_EVENT_TYPE,
                "subject": charge.customer_id,
                "time": LATE_EVENT_TIME,
                "datacontenttype": "application/json",
                "data": {"user_id": f"late-restatement-user-{n}"},
            }
        )


# --- the tests --------------------------------------------------------------------------


def test_a_close_of_a_locked_month_from_the_partition_picker_changes_nothing(
    ui_env: UiEnv,
    dagster: DagsterUi,
    close_assets: list[str],
    page: Page,
    screenshot: Screenshot,
) -> None:
    warehouse = ui_env.data_dir / "warehouse"
    parts_before = partition_states(dagster, close_assets, LOCKED)
    # The setup's close materialized every close asset of the month.
    assert {a: s.status for a, s in parts_before.items()} == dict.fromkeys(
        close_assets, gql.MATERIALIZED
    )
    assert all(s.latest is not None for s in parts_before.values())
    checks_before = check_history(dagster, close_assets)
    files_before = file_digests(warehouse)
    db_before = control_db_dump(ui_env)

    run = launch(page, dagster, CLOSE_JOB, LOCKED, screenshot, prepared_by=INTRUDER)

    reason = assert_refused(dagster, run, LOCKED, "locked", f"by {APPROVER}", "reprocess_job")
    assert partition_states(dagster, close_assets, LOCKED) == parts_before
    assert_checks_untouched(checks_before, check_history(dagster, close_assets), run.run_id, LOCKED)
    assert file_digests(warehouse) == files_before
    assert control_db_dump(ui_env) == db_before

    # The reason is on screen: the run's log, and the run list's tag (whole, on hover).
    ui.open_run(page, dagster, run.run_id)
    ui.wait_for_run_page_status(page, "SUCCESS")
    assert ui.filter_run_log(page, "is locked") == [reason]
    screenshot(page, "run-log-says-locked")
    shown = ui.show_run_tag_in_runs_list(page, dagster, run.run_id, REFUSED_TAG, job=CLOSE_JOB)
    assert shown == f"{REFUSED_TAG}: {reason}"
    screenshot(page, "runs-list-refused-tag")
    # The month's invoices are still the setup close's, in the partitions view too.
    invoices = parts_before["invoice_lines"].latest
    assert invoices is not None
    statuses = ui.partition_status_in_ui(page, dagster, "invoice_lines", LOCKED)
    assert statuses == [gql.MATERIALIZED]
    page.get_by_text(invoices.run_id[:8], exact=True).first.wait_for(timeout=10_000)
    screenshot(page, "invoice-lines-partition-unchanged")


def test_a_close_of_a_month_with_no_data_writes_nothing(
    ui_env: UiEnv,
    dagster: DagsterUi,
    close_assets: list[str],
    page: Page,
    screenshot: Screenshot,
) -> None:
    warehouse = ui_env.data_dir / "warehouse"
    assert not list((ui_env.data_dir / "landing" / "usage").glob(f"{NO_DATA}-*"))
    parts_before = partition_states(dagster, close_assets, NO_DATA)
    assert parts_before == dict.fromkeys(close_assets, PartitionState(gql.MISSING, None))
    checks_before = check_history(dagster, close_assets)
    files_before = file_digests(warehouse)
    assert not [path for path in files_before if NO_DATA in path]
    db_before = control_db_dump(ui_env)

    run = launch(page, dagster, CLOSE_JOB, NO_DATA, screenshot, prepared_by=INTRUDER)

    reason = assert_refused(
        dagster, run, f"{NO_DATA} cannot close", f"{NO_DATA}-01", "no landing files"
    )
    assert partition_states(dagster, close_assets, NO_DATA) == parts_before
    assert_checks_untouched(
        checks_before, check_history(dagster, close_assets), run.run_id, NO_DATA
    )
    # Nothing written: no file anywhere under the warehouse, no row in the control
    # database (no business event queued in its outbox, no transition recorded).
    assert file_digests(warehouse) == files_before
    assert control_db_dump(ui_env) == db_before
    with control_db(ui_env) as db:
        for table in ("event_outbox", "period_transition", "period_lock"):
            rows = db.execute(f"SELECT count(*) FROM {table} WHERE period = ?", (NO_DATA,))
            assert rows.fetchone()[0] == 0, table

    ui.open_run(page, dagster, run.run_id)
    ui.wait_for_run_page_status(page, "SUCCESS")
    assert ui.filter_run_log(page, "cannot close") == [reason]
    screenshot(page, "run-log-says-no-landing-files")
    assert ui.partition_status_in_ui(
        page, dagster, "invoice_lines", NO_DATA, show_detail=False
    ) == [gql.MISSING]
    screenshot(page, "invoice-lines-partition-still-missing")


def test_a_reprocess_from_the_partition_picker_books_its_difference_in_the_open_period(
    ui_env: UiEnv,
    dagster: DagsterUi,
    close_assets: list[str],
    page: Page,
    screenshot: Screenshot,
) -> None:
    warehouse = ui_env.data_dir / "warehouse"
    charge = per_unit_charge(ui_env.data_dir / "reference", LATE_METER, LOCKED)
    locked_files = {p: d for p, d in file_digests(warehouse).items() if LOCKED in p}
    assert any(p.startswith("invoice_lines/") for p in locked_files), sorted(locked_files)
    locked_parts = partition_states(dagster, close_assets, LOCKED)

    # A difference: four more active users of one contract in September, landing late.
    late_file = ui_env.data_dir / "landing" / "usage" / LATE_LANDING_DAY / "late-restatement.ndjson"
    assert late_file.parent.is_dir() and not late_file.exists()
    late_file.write_text("".join(f"{line}\n" for line in late_events(charge)))
    ui_env.run_cli("ingest", "--from", LATE_LANDING_DAY, "--to", LATE_LANDING_DAY)
    expected = LATE_USERS * charge.unit_amount  # e.g. 4 × 2.50 USD
    # A price in whole cents: every user adds exactly it, whatever rounding does.
    assert charge.unit_amount == charge.unit_amount.quantize(Decimal("0.01")), charge

    reason = f"{LATE_USERS} active users of {LOCKED} landed late, on {LATE_LANDING_DAY}"
    run = launch(
        page, dagster, "reprocess_job", LOCKED, screenshot, reason=reason, requested_by=REQUESTER
    )
    events = gql.run_events(dagster, run.run_id)
    assert run.status == "SUCCESS", gql.step_failures(events)
    assert REFUSED_TAG not in run.tags, run.tags[REFUSED_TAG]
    # Whatever the job materializes (a restatement asset, say), none of the locked
    # month's close partitions.
    rewritten = [a for a, p in gql.materialized_assets(events) if a in close_assets and p == LOCKED]
    assert rewritten == [], rewritten
    with control_db(ui_env) as db:
        requests = db.execute(
            "SELECT requested_by, reason FROM reprocess_request WHERE period = ?", (LOCKED,)
        ).fetchall()
    assert (REQUESTER, reason) in requests
    assert_unchanged(locked_files, file_digests(warehouse))
    booked_in = open_period(ui_env)
    assert any(booked_in in message for message in gql.log_messages(events)), (
        f"the run does not say the difference is booked in {booked_in}"
    )
    ui.open_run(page, dagster, run.run_id)
    ui.wait_for_run_page_status(page, "SUCCESS")
    assert any(LOCKED in m for m in ui.filter_run_log(page, booked_in))
    screenshot(page, "reprocess-run-names-the-open-period")

    ui_env.run_cli("close", "--period", booked_in, "--by", PREPARER)

    lines = pl.read_parquet(warehouse / "invoice_lines" / f"{booked_in}.parquet")
    adjustments = lines.filter(
        (pl.col("kind") == "prior_period_adjustment") & (pl.col("service_period") == LOCKED)
    )
    assert adjustments.height > 0, f"no adjustment of {LOCKED} in {booked_in}'s invoices"
    assert adjustments["amount"].sum() == expected, adjustments.select(
        "contract_id", "charge_id", "quantity", "amount"
    ).rows()
    assert adjustments["quantity"].sum() == LATE_USERS
    assert set(adjustments["contract_id"]) == {charge.contract_id}
    assert set(adjustments["charge_id"]) == {charge.charge_id}
    assert set(adjustments["currency"]) == {charge.currency}
    # The locked month was not rewritten: its files and its partitions' latest runs.
    assert_unchanged(locked_files, file_digests(warehouse))
    assert partition_states(dagster, close_assets, LOCKED) == locked_parts

    # The open period's invoices show the adjustment in the UI, at the same amount.
    ui.open_partition_detail(page, dagster, "invoice_lines", booked_in)
    by_kind = ui.show_markdown_metadata(page, "lines_by_kind")
    shown = [
        line.split("\t")
        for line in by_kind.splitlines()
        if "\tprior_period_adjustment\t" in f"\t{line}\t"
    ]
    assert [(c[0], Decimal(c[-1])) for c in shown] == [(charge.currency, expected)], by_kind
    screenshot(page, "open-period-invoices-carry-the-adjustment")


def test_the_lock_job_launched_from_the_ui_locks_the_month(
    ui_env: UiEnv,
    dagster: DagsterUi,
    approved_month: str,
    page: Page,
    screenshot: Screenshot,
) -> None:
    period = approved_month
    assert period not in locks(ui_env)

    run = launch(page, dagster, "lock_job", period, screenshot, locked_by=LOCKER)

    events = gql.run_events(dagster, run.run_id)
    assert run.status == "SUCCESS", gql.step_failures(events)
    assert REFUSED_TAG not in run.tags, run.tags[REFUSED_TAG]
    row = status_row(ui_env.run_cli("status").stdout, period)
    assert (row["state"], row["locked"]) == ("locked", LOCKER), row
    with control_db(ui_env) as db:
        lock = db.execute(
            "SELECT locked_by, run_id FROM period_lock WHERE period = ?", (period,)
        ).fetchone()
    assert lock == (LOCKER, run.run_id)
    ui.open_run(page, dagster, run.run_id)
    ui.wait_for_run_page_status(page, "SUCCESS")
    assert any(period in m for m in ui.filter_run_log(page, f"locked by {LOCKER}"))
    screenshot(page, "lock-run-log")

    # Locked for good: a close launched on it later is refused, naming who locked it.
    refused = launch(page, dagster, CLOSE_JOB, period, screenshot, prepared_by=INTRUDER)
    reason = assert_refused(dagster, refused, period, "locked", f"by {LOCKER}", "reprocess_job")
    shown = ui.show_run_tag_in_runs_list(page, dagster, refused.run_id, REFUSED_TAG, job=CLOSE_JOB)
    assert shown == f"{REFUSED_TAG}: {reason}"
    screenshot(page, "later-close-refused")
