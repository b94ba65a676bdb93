"""End to end on generated data: every injected fault accounted for, line by line."""

from __future__ import annotations

import filecmp
import json
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets.ingest import ingest_landing_day
from dagster_project import cli, report
from dagster_project.resources import build_resources
from dagster_project.settings import REPO_ROOT, load_settings
from rating.ingest import meters_table
from sampledata import UNKNOWN_CUSTOMERS, generate
from tests.conftest import settings_for

pytestmark = pytest.mark.slow
PARTS = ("reference", "landing", "manifest")


def linked_root(root: Path, generated: Path, parts: tuple[str, ...] = PARTS) -> Path:
    """A data root that reads the generated inputs and writes its own outputs."""
    root.mkdir(parents=True)
    for part in parts:
        (root / part).symlink_to(generated / part)
    return root


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("generated")
    generate(root, ["2026-09", "2026-10"], 1500, seed=3)
    return root


def test_shipped_sample_is_exactly_what_the_generator_makes(tmp_path: Path) -> None:
    generate(tmp_path, list(cli.DEMO_MONTHS), cli.DEMO_EVENTS, cli.DEMO_SEED)
    shipped = REPO_ROOT / "data"
    for part in ("reference", "landing", "manifest"):
        fresh = sorted(p.relative_to(tmp_path) for p in (tmp_path / part).rglob("*") if p.is_file())
        ours = sorted(p.relative_to(shipped) for p in (shipped / part).rglob("*") if p.is_file())
        assert fresh == ours, part
        _, mismatch, errors = filecmp.cmpfiles(
            shipped, tmp_path, [str(p) for p in ours], shallow=False
        )
        assert mismatch == [] and errors == [], part


def test_generated_months_through_the_ingest_job_match_the_manifest(
    generated: Path, tmp_path: Path, dagster_home: Path
) -> None:
    root = linked_root(tmp_path / "data", generated)
    settings = settings_for(root)
    days = cli._landing_days(settings, None, None)
    run_ids = cli.run_ingest(settings, days)
    assert len(run_ids) == 3  # September, October, and the days of November late data lands on

    outcome = report.compare_manifest(settings, days)
    assert outcome.passed, outcome.metadata["first_mismatches"]
    manifest = pl.read_parquet(generated / "manifest" / "lines.parquet")
    faults = set(manifest["fault"].unique())
    assert {"duplicate_later_day", "invalid_encoding", "too_late", "late_event"} <= faults

    # The runs are in the instance the UI reads, with their check results.
    instance = dg.DagsterInstance.get()
    assert {r.run_id for r in instance.get_runs()} >= set(run_ids)

    # Per-meter totals reconcile with the manifest's accepted events.
    usage = pl.scan_parquet(settings.warehouse_dir / "usage_events" / "*.parquet")
    accepted = manifest.filter(pl.col("outcome") == "accepted")
    assert usage.select(pl.struct("source", "event_id").n_unique()).collect().item() == (
        accepted.height
    )
    assert usage.select(pl.len()).collect().item() == accepted["meter_count"].sum()


def test_backfill_range_and_day_by_day_write_identical_bytes(
    generated: Path, tmp_path: Path
) -> None:
    written = {}
    for mode in ("range", "daily"):
        root = linked_root(tmp_path / mode, generated, ("reference", "landing"))
        resources = build_resources(settings_for(root))
        days = [date(2026, 9, d) for d in range(1, 11)]
        if mode == "range":
            dg.materialize(
                [ingest_landing_day],
                resources=resources,
                tags={cli.RANGE_START: "2026-09-01", cli.RANGE_END: "2026-09-10"},
            )
        else:
            for day in days:
                dg.materialize(
                    [ingest_landing_day], partition_key=day.isoformat(), resources=resources
                )
        written[mode] = {
            p.relative_to(root / "warehouse"): p.read_bytes()
            for p in (root / "warehouse").rglob("*.parquet")
        }
    assert len(written["range"]) == 30
    assert written["range"] == written["daily"]


def test_adding_the_unknown_customers_accepts_exactly_their_lines(
    generated: Path, tmp_path: Path, dagster_home: Path
) -> None:
    root = tmp_path / "data"
    (root / "reference").mkdir(parents=True)
    for f in (generated / "reference").iterdir():
        (root / "reference" / f.name).write_bytes(f.read_bytes())
    (root / "landing").symlink_to(generated / "landing")
    settings = settings_for(root)
    days = [d for d in cli._landing_days(settings, None, None) if d.month == 9]
    cli.run_ingest(settings, days)
    quarantined = pl.read_parquet(settings.warehouse_dir / "quarantined_events" / "*.parquet")
    unknown = quarantined.filter(pl.col("reason") == "unknown_customer")
    assert set(unknown["customer_id"]) <= set(UNKNOWN_CUSTOMERS) and unknown.height > 0

    with (root / "reference" / "customers.csv").open("a") as stream:
        for customer in UNKNOWN_CUSTOMERS:
            stream.write(f"{customer},Late Customer {customer},US01,USD,US\n")
    cli.run_ingest(settings, days)
    after = pl.read_parquet(settings.warehouse_dir / "quarantined_events" / "*.parquet")
    assert after.filter(pl.col("reason") == "unknown_customer").height == 0
    assert after.height == quarantined.height - unknown.height
    usage = pl.read_parquet(settings.warehouse_dir / "usage_events" / "*.parquet")
    keys = set(unknown.select("source", "event_id").iter_rows())
    assert keys <= set(usage.select("source", "event_id").iter_rows())


def test_demo_command_prints_the_summary(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "demo"
    assert cli.main(["--data-dir", str(root), "demo"]) == 0
    out = capsys.readouterr().out
    assert "8,124 = 8,000 accepted + 80 duplicates + 44 quarantined (balanced)" in out
    assert "8124 manifest lines, every one placed as expected" in out
    assert "Rated usage (billable_usage)" in out
    assert "Invoices and credit memos (invoice_lines)" in out
    assert "Journals (journal_lines), functional currency" in out
    journals = pl.read_parquet(root / "warehouse" / "journal_lines" / "*.parquet")
    totals = journals.group_by("journal_id").agg(
        pl.col("debit", "credit", "functional_debit", "functional_credit").sum()
    )
    assert (totals["debit"] == totals["credit"]).all()
    assert (totals["functional_debit"] == totals["functional_credit"]).all()
    assert journals["account"].null_count() == 0
    assert "Reconciliation and exceptions" in out
    # Two people: one prepares each close, another approves and locks it.
    assert "closing 2026-09 (prepared by demo-preparer)" in out
    assert "2026-09 locked by meterclose-demo" in out
    assert "2026-10 locked by meterclose-demo" in out
    # November has five landing days of the 34 its calendar needs: it waits, named.
    assert (
        "2026-11 not closed: 2026-11 cannot close: landing day 2026-11-06 … 2026-12-04 "
        "(29 days) have no landing files" in out
    )
    assert "closed, approved and locked: 2026-09, 2026-10; published nothing" in out
    controls = pl.read_parquet(root / "warehouse" / "reconciliation" / "*.parquet")
    assert controls.filter(pl.col("status") == "unexplained").height == 0
    # Quarantined lines and duplicates explain the accepted count, to the line.
    accepted = controls.filter(pl.col("control") == "lines_accepted").sort("period")
    assert accepted["status"].to_list() == ["explained", "explained"]
    assert accepted["variance"].sum() == 32 + 20 + 47 + 24
    queue = pl.read_parquet(root / "warehouse" / "exceptions" / "*.parquet")
    assert {"unknown_customer", "late_event", "rejected_telemetry"} <= set(queue["kind"])
    for period in ("2026-09", "2026-10"):
        manifest = json.loads(
            (root / "warehouse" / "exports" / period / "v001" / "manifest.json").read_text()
        )
        assert {f["name"] for f in manifest["files"]} == {
            "journal_lines.csv",
            "journal_lines.parquet",
            "netsuite_journals.csv",
            "oracle_gl_interface.csv",
        }
    rated = pl.read_parquet(root / "warehouse" / "billable_usage" / "*.parquet")
    assert sorted(rated["period"].unique()) == ["2026-09", "2026-10"]
    invoiced = pl.read_parquet(root / "warehouse" / "invoice_lines" / "*.parquet")
    assert (
        invoiced.filter(pl.col("kind") == "usage").height
        == rated.filter(pl.col("kind") == "usage").height
    )
    assert set(invoiced["kind"]) == {
        "usage",
        "minimum_true_up",
        "commitment_true_up",
        "recurring",
        "recurring_adjustment",
        "credit",
        "prepaid_drawdown",
    }
    assert (root / "warehouse" / "meterclose.duckdb").exists()
    assert load_settings(root).data_dir == root.resolve()


def test_closing_october_before_september_still_accepts_each_event_once(
    generated: Path, tmp_path: Path, dagster_home: Path
) -> None:
    root = linked_root(tmp_path / "data", generated)
    settings = settings_for(root)
    # Closes prepare a month and lock nothing, so October can be closed before September.
    assert cli.main(["--data-dir", str(root), "close", "--period", "2026-10"]) == 0
    # October's deduplication needs the September days before it: they were ingested too.
    ingested = sorted(p.stem for p in (settings.warehouse_dir / "usage_events").glob("*"))
    assert ingested[0] <= "2026-09-26"
    assert cli.main(["--data-dir", str(root), "close", "--period", "2026-09"]) == 0
    days = cli._landing_days(settings, None, date(2026, 10, 31))
    outcome = report.compare_manifest(settings, days)
    assert outcome.passed, outcome.metadata["first_mismatches"]
    usage = pl.read_parquet(settings.warehouse_dir / "usage_events" / "*.parquet")
    per_event = usage.group_by("source", "event_id").agg(pl.col("received_date").n_unique())
    assert per_event["received_date"].max() == 1


# An independent recomputation, written plainly in SQL, of the usage lines of contracts
# on one plan for the whole of September with no amendment: the month's aggregate per
# meter, less included units, priced per model.
_INDEPENDENT = """
WITH plain_contracts AS (
    SELECT contract_id, customer_id, plan_id FROM contracts
    WHERE start_date <= DATE '2026-09-01'
      AND (last_day IS NULL OR last_day >= DATE '2026-09-30')
      AND contract_id NOT IN (SELECT contract_id FROM term_changes
                              WHERE effective_date <= DATE '2026-09-30')
), usage AS (
    SELECT customer_id, meter,
        sum(quantity) AS total, count(*) AS events, max(quantity) AS peak,
        arg_max(quantity, (event_time, source, event_id)) AS latest,
        count(DISTINCT unique_value) AS uniques
    FROM read_parquet($files)
    WHERE usage_date BETWEEN DATE '2026-09-01' AND DATE '2026-09-30'
    GROUP BY ALL
), lines AS (
    SELECT c.contract_id, pu.charge_id, pu.model, pu.unit_amount, pu.package_size,
        pu.package_amount, coalesce(pu.free_units, 0) AS free_units,
        greatest(coalesce(CASE m.aggregation
            WHEN 'SUM' THEN u.total WHEN 'COUNT' THEN u.events WHEN 'MAX' THEN u.peak
            WHEN 'LATEST' THEN u.latest WHEN 'UNIQUE_COUNT' THEN u.uniques END, 0)
            - pu.included_units, 0) AS q
    FROM plain_contracts c
    JOIN plan_usage pu USING (plan_id)
    JOIN meters m ON m.meter = pu.meter
    LEFT JOIN usage u ON u.customer_id = c.customer_id AND u.meter = pu.meter
    WHERE len(pu.group_by) = 0 AND pu.model IN ('per_unit', 'package', 'graduated', 'volume')
), tiered AS (
    SELECT l.contract_id, l.charge_id, l.model, l.q, t.tier_no, t.unit_amount,
        t.flat_amount,
        coalesce(lag(t.up_to) OVER (PARTITION BY l.contract_id, l.charge_id
                                    ORDER BY t.tier_no), 0) AS low,
        t.up_to AS high
    FROM lines l
    JOIN plan_tiers t ON t.charge_id = l.charge_id
    JOIN plain_contracts c ON c.contract_id = l.contract_id AND c.plan_id = t.plan_id
    WHERE l.model IN ('graduated', 'volume')
)
SELECT contract_id, charge_id, sum(amount) AS amount FROM (
    SELECT contract_id, charge_id, q * unit_amount AS amount
    FROM lines WHERE model = 'per_unit'
    UNION ALL
    SELECT contract_id, charge_id,
        ceil(greatest(q - free_units, 0) / package_size) * package_amount
    FROM lines WHERE model = 'package'
    UNION ALL
    SELECT contract_id, charge_id,
        CASE WHEN q > low OR tier_no = 1
             THEN (least(q, coalesce(high, q)) - least(q, low)) * coalesce(unit_amount, 0)
                  + coalesce(flat_amount, 0)
             ELSE 0 END
    FROM tiered WHERE model = 'graduated'
    UNION ALL
    SELECT contract_id, charge_id,
        CASE WHEN (q > low OR (q = 0 AND tier_no = 1)) AND (high IS NULL OR q <= high)
             THEN q * coalesce(unit_amount, 0) + coalesce(flat_amount, 0) ELSE 0 END
    FROM tiered WHERE model = 'volume'
)
GROUP BY ALL
ORDER BY ALL
"""


def test_rated_month_equals_an_independent_recomputation(
    generated: Path, tmp_path: Path, dagster_home: Path
) -> None:
    from rating.ingest import connect
    from rating.terms import reference_tables
    from resources.reference import ReferenceData

    root = linked_root(tmp_path / "data", generated)
    settings = settings_for(root)
    assert cli.main(["--data-dir", str(root), "close", "--period", "2026-09"]) == 0
    rated = pl.read_parquet(settings.warehouse_dir / "billable_usage" / "2026-09.parquet")

    reference = ReferenceData(root / "reference")
    plans = reference.plans()
    con = connect()
    for name, table in reference_tables(plans, reference.contracts(plans)).items():
        con.register(name, table)
    con.register("meters", meters_table(reference.meters()))
    files = [str(p) for p in (settings.warehouse_dir / "usage_events").glob("*.parquet")]
    expected = pl.from_arrow(con.sql(_INDEPENDENT, params={"files": files}).to_arrow_table())
    assert isinstance(expected, pl.DataFrame)
    assert expected.height > 100, "the sample has many plain contracts"
    ours = (
        rated.filter(pl.col("kind") == "usage")
        .join(expected.select("contract_id", "charge_id"), on=["contract_id", "charge_id"])
        .group_by("contract_id", "charge_id")
        .agg(pl.col("amount_precise").sum())
        .sort("contract_id", "charge_id")
    )
    joined = expected.join(ours, on=["contract_id", "charge_id"], how="left")
    different = joined.filter(
        pl.col("amount_precise").is_null()
        | (pl.col("amount").cast(pl.Decimal(38, 12)) != pl.col("amount_precise"))
    )
    assert different.height == 0, different
    assert joined.filter(pl.col("amount_precise") > 0).height > 50, "most lines bill something"
    assert set(joined["charge_id"]) >= {"api-calls", "storage", "active-users"}


# Invoices of contracts with nothing unusual in September — calendar billing, started
# before it, no end date, no amendment, no prepaid credit, commitment or co-terming —
# recomputed plainly: the recurring invoice of September 1st is each monthly fee × its
# quantity, plus each yearly fee whose anniversary falls in September (on an invoice of
# that day); the usage invoice
# of October 1st is the independently priced usage lines above, each rounded half-even.
_PLAIN_FEES = """
WITH plain AS (
    SELECT * FROM contracts
    WHERE start_date < DATE '2026-09-01' AND billing_alignment = 'calendar'
      AND end_date IS NULL AND prepaid_credit IS NULL AND minimum_commitment IS NULL
      AND anniversary = start_date
      AND contract_id NOT IN (SELECT contract_id FROM term_changes)
      AND contract_id NOT IN (SELECT contract_id FROM price_overrides)
      AND contract_id NOT IN (SELECT contract_id FROM contracts WHERE cancelled_from IS NOT NULL)
)
SELECT p.contract_id, sum(r.amount * r.quantity) AS fees
FROM plain p JOIN plan_recurring r USING (plan_id)
WHERE r.interval = 'month' OR month(p.start_date) = 9
GROUP BY ALL
ORDER BY ALL
"""


def test_invoice_totals_equal_an_independent_recomputation(
    generated: Path, tmp_path: Path, dagster_home: Path
) -> None:
    from decimal import ROUND_HALF_EVEN, Decimal

    from rating.currency import minor_units
    from rating.ingest import connect
    from rating.terms import reference_tables
    from resources.reference import ReferenceData

    root = linked_root(tmp_path / "data", generated)
    settings = settings_for(root)
    assert cli.main(["--data-dir", str(root), "close", "--period", "2026-09"]) == 0
    invoices = (
        pl.read_parquet(settings.warehouse_dir / "invoice_lines" / "2026-09.parquet")
        .group_by("invoice_id", "contract_id", "currency")
        .agg(total=pl.col("amount").sum())
    )
    reference = ReferenceData(root / "reference")
    plans = reference.plans()
    con = connect()
    for name, table in reference_tables(plans, reference.contracts(plans)).items():
        con.register(name, table)
    con.register("meters", meters_table(reference.meters()))
    fees = con.sql(_PLAIN_FEES).fetchall()
    assert len(fees) > 50, "the sample has many plain contracts"
    totals = {(row["invoice_id"]): row["total"] for row in invoices.iter_rows(named=True)}
    # Monthly fees on September 1st's invoice, a yearly fee on its anniversary's.
    fee_invoices = (
        invoices.filter(pl.col("invoice_id").str.ends_with("-R"))
        .group_by("contract_id")
        .agg(pl.col("total").sum())
    )
    billed = dict(fee_invoices.iter_rows())
    for contract_id, expected in fees:
        assert billed.get(contract_id) == expected, contract_id

    # Usage invoices of plain contracts whose every usage charge the plain SQL prices.
    files = [str(p) for p in (settings.warehouse_dir / "usage_events").glob("*.parquet")]
    priced = con.sql(_INDEPENDENT, params={"files": files}).fetchall()
    charges = con.sql(
        "SELECT plan_id, count(*) FROM plan_usage WHERE len(group_by) = 0 "
        "AND model IN ('per_unit', 'package', 'graduated', 'volume') "
        "AND minimum_amount = 0 GROUP BY ALL"
    ).fetchall()
    all_charges = dict(con.sql("SELECT plan_id, count(*) FROM plan_usage GROUP BY ALL").fetchall())
    simple_plans = {plan for plan, n in charges if n == all_charges[plan]}
    plan_of = dict(con.sql("SELECT contract_id, plan_id FROM contracts").fetchall())
    currency_of = dict(con.sql("SELECT plan_id, currency FROM plan_usage").fetchall())
    plain = {c for c, _ in fees if plan_of[c] in simple_plans}
    assert len(plain) > 20, "the sample has many contracts on simple plans"
    expected_usage: dict[str, Decimal] = {}
    for contract_id, _, amount in priced:
        if contract_id in plain:
            unit = Decimal(1).scaleb(-minor_units(currency_of[plan_of[contract_id]]))
            rounded = Decimal(amount).quantize(unit, rounding=ROUND_HALF_EVEN)
            expected_usage[contract_id] = expected_usage.get(contract_id, Decimal(0)) + rounded
    assert set(expected_usage) == plain
    for contract_id, expected in expected_usage.items():
        assert totals[f"INV-{contract_id}-20261001-U"] == expected, contract_id


@pytest.mark.slow
@pytest.mark.parametrize("today", ["2026-11-15", "2027-03-01", "2031-01-01"])
def test_the_demo_closes_the_same_months_whatever_the_clock(
    today: str, tmp_path: Path, generated: Path
) -> None:
    """The product's clock (METERCLOSE_TODAY) decides which months can close, in a fresh
    process as a user runs it: September and October, whatever the date; November waits."""
    import os
    import subprocess
    import sys

    root = linked_root(tmp_path / "data", generated)
    env = {
        **os.environ,
        "METERCLOSE_TODAY": today,
        "METERCLOSE_FIRST_DAY": "2026-09-01",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "dagster_project.cli", "--data-dir", str(root), "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "closed, approved and locked: 2026-09, 2026-10;" in done.stdout
    waiting = {
        "2026-11-15": "2026-11 not closed: 2026-11 cannot close yet: its landing calendar runs "
        "through 2026-12-04 and today is 2026-11-15",
        "2027-03-01": "2026-11 not closed: 2026-11 cannot close: landing day 2026-11-06 … "
        "2026-12-04 (29 days) have no landing files",
    }.get(today, "2026-11 not closed: 2026-11 cannot close: landing day 2026-11-06 …")
    assert waiting in done.stdout
    rated = pl.read_parquet(root / "warehouse" / "billable_usage" / "*.parquet")
    assert sorted(rated["period"].unique()) == ["2026-09", "2026-10"]


@pytest.mark.slow
def test_a_missing_landing_day_stops_the_close_until_a_controller_confirms_it(
    generated: Path, tmp_path: Path, dagster_home: Path
) -> None:
    import shutil

    from resources.control_db import ControlDb

    root = linked_root(tmp_path / "data", generated, ("reference", "manifest"))
    shutil.copytree(generated / "landing", root / "landing", symlinks=True)
    shutil.rmtree(root / "landing" / "usage" / "2026-09-15")
    settings = settings_for(root)
    close = ["--data-dir", str(root), "close", "--period", "2026-09", "--by", "paula"]
    with pytest.raises(SystemExit, match=r"landing day 2026-09-15 has no landing files"):
        cli.main(close)
    # Refused before anything was rated, invoiced, booked or queued.
    for table in ("billable_usage", "invoice_lines", "journal_lines", "reconciliation"):
        assert not (root / "warehouse" / table / "2026-09.parquet").exists(), table
    db = ControlDb(settings.control_db_url)
    assert db.outbox("2026-09") == []

    confirm = ["--day", "2026-09-15", "--reason", "feed outage, nothing sent", "--by", "carol"]
    assert cli.main(["--data-dir", str(root), "confirm-day", *confirm]) == 0
    assert cli.main(close) == 0
    controls = pl.read_parquet(root / "warehouse" / "reconciliation" / "2026-09.parquet")
    calendar = controls.filter(pl.col("control") == "landing_days_complete").row(0, named=True)
    assert (calendar["expected"], calendar["actual"], calendar["variance"]) == (34, 33, 1)
    assert calendar["status"] == "explained"
    assert calendar["explanation"].startswith(
        "2026-09-15 (missing) confirmed by carol at "
    ) and calendar["explanation"].endswith(": feed outage, nothing sent")
    queue = pl.read_parquet(root / "warehouse" / "exceptions" / "2026-09.parquet")
    confirmed = queue.filter(pl.col("kind") == "landing_day_confirmed")
    assert confirmed["reason"].str.contains("2026-09-15 \\(missing\\) confirmed").to_list() == [
        True
    ]

    # Segregation of duties: the preparer cannot approve; someone else can.
    approve = ["--data-dir", str(root), "approve", "--period", "2026-09", "--by"]
    with pytest.raises(SystemExit, match=r"paula prepared the close of 2026-09 and cannot"):
        cli.main([*approve, "paula"])
    assert cli.main([*approve, "dave"]) == 0
    assert set(db.approvals("2026-09")) == {"EU01", "JP01", "UK01", "US01"}
    db.dispose()
