"""The close on hand-written books: revenue schedules that sum exactly, accruals and their
reversal, deferred revenue released at its historical rate, journals balanced in both
currencies — worked out by hand in the comments."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import dagster as dg
import duckdb
import hypothesis.strategies as st
import polars as pl
import pyarrow as pa
import pytest
import yaml
from hypothesis import given, settings

from assets.billing import billable_usage
from assets.events import business_events
from assets.exports import erp_exports
from assets.invoice import invoice_lines
from assets.journals import journal_lines
from assets.reconcile import reconciliation
from assets.revenue import revenue_schedule
from rating.revenue import revenue_schedule as schedule_month
from tests.test_invoicing import Books, contract, month

D = Decimal
ASSETS = [
    business_events,
    billable_usage,
    invoice_lines,
    revenue_schedule,
    journal_lines,
    reconciliation,
    erp_exports,
]

ENTITIES = """entity_id,name,functional_currency,erp_subsidiary
US01,Meterclose Inc.,USD,1
EU01,Meterclose B.V.,EUR,2
"""
CUSTOMERS = """customer_id,name,entity_id,currency,country
CUST-0001,Acme Corp,US01,USD,US
CUST-0002,Globex GmbH,EU01,EUR,DE
CUST-0003,Initech B.V.,EU01,USD,NL
"""
FX = """date,from_currency,to_currency,rate,rate_type
2026-09-01,USD,EUR,0.90,daily
2026-09-30,USD,EUR,0.92,daily
2026-10-01,USD,EUR,0.95,daily
2026-10-31,USD,EUR,0.80,daily
"""


def accounts(**drop: str) -> dict[str, object]:
    roles = {
        "receivable": "1100",
        "unbilled_receivable": "1150",
        "deferred_revenue": "2300",
        "contract_liability": "2350",
        "customer_credits": "2400",
        "fx_gain_loss": "7100",
        "rounding": "7190",
        "breakage": "4900",
    }
    revenue = {"platform": "4000", "api": "4100", "seats": "4400"}
    return {
        "accounts": {
            entity: {
                **roles,
                "revenue": {k: v for k, v in revenue.items() if drop.get(entity) != k},
            }
            for entity in ("US01", "EU01")
        }
    }


def daily_fx(
    quotes: str, through: date = date(2026, 12, 31), since: date = date(2026, 8, 1)
) -> str:
    """``quotes`` with every day from ``since`` through ``through`` filled from the latest
    quote before it (the earliest one before that): the same rates, each quoted on the day
    a close asks for (a close refuses a day without its own quote)."""
    frame = pl.read_csv(
        io.StringIO(quotes), try_parse_dates=True, schema_overrides={"rate": pl.String}
    )
    earliest = frame.sort("date").group_by("to_currency", maintain_order=True).first()
    frame = pl.concat([earliest.with_columns(date=pl.lit(since)).select(frame.columns), frame])
    days = pl.DataFrame({"date": pl.date_range(since, through, eager=True)})
    filled = [
        days.join_asof(rows.sort("date"), on="date", strategy="backward")
        .with_columns(
            pl.col("from_currency", "to_currency", "rate_type").fill_null(strategy="forward")
        )
        .drop_nulls()
        for _, rows in frame.group_by("to_currency", maintain_order=True)
    ]
    out = io.StringIO()
    pl.concat(filled).sort("date", "to_currency").write_csv(out)
    return out.getvalue()


def books(
    root: Path,
    contracts: list[dict[str, object]] | None = None,
    fx: str = FX,
    credits: str = "",
    **drop: str,
) -> None:
    Books(
        root,
        contracts
        or [
            # A USD customer of the EUR entity: a yearly fee billed in advance…
            contract(customer_id="CUST-0003", plan_id="yearly-usd", start_date="2026-09-01"),
            # … and monthly fees and usage on another contract of the same customer.
            contract(contract_id="C-2", customer_id="CUST-0003", start_date="2026-09-01"),
            contract(contract_id="C-3", customer_id="CUST-0001", start_date="2026-09-01"),
        ],
        credits=credits,
    )
    reference = root / "reference"
    (reference / "entities.csv").write_text(ENTITIES)
    (reference / "customers.csv").write_text(CUSTOMERS)
    (reference / "fx_rates.csv").write_text(daily_fx(fx))
    (reference / "accounts.yaml").write_text(yaml.safe_dump(accounts(**drop)))


def calls_arriving(land: object, resources: dict[str, object]) -> Callable[..., None]:
    """``arrive(day, prefix, count, when)``: API calls of CUST-0001 landing on ``day``,
    ingested there and then."""
    from assets.ingest import ingest_landing_day
    from assets.usage import daily_usage
    from tests.conftest import event

    def arrive(day: date, prefix: str, count: int, when: str) -> None:
        lines = [
            event(f"{prefix}{i}", "api.request", time=when, data={"region": "eu"})
            for i in range(count)
        ]
        land(day, "events-00.ndjson", lines)  # type: ignore[operator]
        dg.materialize(
            [ingest_landing_day, daily_usage], partition_key=day.isoformat(), resources=resources
        )

    return arrive


PREPARER = "preparer"


def close(resources: dict[str, object], period: str) -> dg.ExecuteInProcessResult:
    """The close as close_job runs it: the landing calendar's gate, the steps, the record."""
    from assets.close import close_record, landing_calendar
    from tests.conftest import confirm_calendar

    settings = resources["settings"].get()  # type: ignore[attr-defined]
    confirm_calendar(settings, period)
    return dg.materialize(
        [landing_calendar, *ASSETS, close_record],
        partition_key=period,
        resources=resources,
        raise_on_error=False,
        run_config={"ops": {"landing_calendar": {"config": {"prepared_by": PREPARER}}}},
    )


def close_month(settings: object, period: str, locked_by: str | None) -> None:
    """Close a month through the CLI's jobs; with ``locked_by``, approve and lock it too."""
    from dagster_project import cli
    from tests.conftest import confirm_calendar

    confirm_calendar(settings, period)  # type: ignore[arg-type]
    cli.run_close(settings, period, PREPARER)  # type: ignore[arg-type]
    if locked_by is not None:
        cli.approve_period(settings, period, None, locked_by)  # type: ignore[arg-type]
        cli.lock_period(settings, period, locked_by)  # type: ignore[arg-type]


def test_journals_balance_accrue_reverse_and_keep_historical_rates(
    data_dir: Path, resources: dict[str, object]
) -> None:
    books(data_dir)
    for period in ("2026-09", "2026-10"):
        result = close(resources, period)
        assert result.success
        assert all(c.passed for c in result.get_asset_check_evaluations())
    warehouse = data_dir / "warehouse"
    lines = pl.read_parquet(warehouse / "journal_lines" / "*.parquet")

    def posted(journal: str, role: str, contract_id: str = "C-1") -> list[tuple[object, ...]]:
        return (
            lines.filter(
                (pl.col("journal_id") == journal)
                & (pl.col("account_role") == role)
                & (pl.col("contract_id") == contract_id)
            )
            .select("debit", "credit", "fx_rate", "functional_debit", "functional_credit")
            .rows()
        )

    # September 1st: the year's fee, 36600.00, to deferred revenue at 0.90: 32940.00 EUR.
    assert posted("JE-EU01-2026-09-USD-billing", "deferred_revenue") == [
        (D(0), D("36600"), D("0.9"), D(0), D("32940"))
    ]
    # Released 30/365 in September (3008.22) and 61/365 − 30/365 in October (3108.49),
    # both at the invoice's 0.90 — deferred revenue is not remeasured at October's 0.80.
    assert posted("JE-EU01-2026-09-USD-revenue_release", "deferred_revenue") == [
        (D("3008.22"), D(0), D("0.9"), D("2707.40"), D(0))
    ]
    assert posted("JE-EU01-2026-10-USD-revenue_release", "deferred_revenue") == [
        (D("3108.49"), D(0), D("0.9"), D("2797.64"), D(0))
    ]
    # C-2's September usage (5.00, the first tier's flat fee) is accrued on the 30th at
    # 0.92, reversed on October 1st at the same 0.92, and invoiced that day at the rate
    # its revenue was accrued at (0.92, not October 1st's 0.95): no FX lands in revenue.
    assert posted("JE-EU01-2026-09-USD-usage_accrual", "unbilled_receivable", "C-2") == [
        (D("5"), D(0), D("0.92"), D("4.60"), D(0))
    ]
    assert posted("JE-EU01-2026-10-USD-accrual_reversal", "unbilled_receivable", "C-2") == [
        (D(0), D("5"), D("0.92"), D(0), D("4.60"))
    ]
    usage_invoice = lines.filter(pl.col("invoice_id") == "INV-C-2-20261001-U")
    assert usage_invoice.filter(pl.col("account_role") == "receivable").select(
        "journal_id", "debit", "functional_debit"
    ).rows() == [("JE-EU01-2026-10-USD-billing", D("5"), D("4.60"))]
    # Every journal balances in both currencies; the rounding account takes what rounding
    # each line once leaves, never more than a few minor units.
    totals = lines.group_by("journal_id").agg(
        pl.col("debit", "credit", "functional_debit", "functional_credit").sum()
    )
    assert (totals["debit"] == totals["credit"]).all()
    assert (totals["functional_debit"] == totals["functional_credit"]).all()
    rounding = lines.filter(pl.col("account_role") == "rounding")
    assert all(
        d + c <= D("0.05")
        for d, c in rounding.select("functional_debit", "functional_credit").rows()
    )
    # Dimensions and references on every line.
    assert lines["erp_subsidiary"].null_count() == 0
    usage_lines = lines.filter(pl.col("account_role") == "revenue")
    assert usage_lines["product_family"].null_count() == 0
    assert usage_lines["line_id"].null_count() == 0
    assert lines["correlation_id"].null_count() == 0

    # Every control ties: nothing landed, so there is nothing to explain either — but the
    # landing calendar, whose empty days a controller confirmed, naming each.
    controls = pl.read_parquet(warehouse / "reconciliation" / "*.parquet")
    calendar = controls.filter(pl.col("control") == "landing_days_complete")
    assert calendar.select("period", "expected", "actual", "variance", "status").rows() == [
        ("2026-09", 34, 0, 34, "explained"),
        ("2026-10", 35, 0, 35, "explained"),
    ]
    controls = controls.filter(pl.col("control") != "landing_days_complete")
    assert set(controls["status"]) == {"tied"}
    roll = controls.filter(
        (pl.col("control") == "deferred_revenue_roll_forward")
        & (pl.col("entity_id") == "EU01")
        & (pl.col("period") == "2026-10")
    )
    # Opening 33591.78 (36600 − 3008.22) + billed 1450.00 (C-2's October fees) − released
    # 3108.49 + 1450.00 = closing 30483.29.
    assert roll.select("expected", "actual").rows() == [(D("30483.29"), D("30483.29"))]

    # US01 books USD at a rate of 1, and its monthly fees go to deferred revenue first.
    us = lines.filter(pl.col("entity_id") == "US01")
    assert set(us["fx_rate"].drop_nulls()) == {D(1)}
    assert posted("JE-US01-2026-09-USD-billing", "deferred_revenue", "C-3") == [
        (D(0), D("1200"), D(1), D(0), D("1200")),
        (D(0), D("250"), D(1), D(0), D("250")),
    ]


def test_a_missing_revenue_account_stops_the_close(
    data_dir: Path, resources: dict[str, object]
) -> None:
    books(data_dir, EU01="seats")
    result = close(resources, "2026-09")
    failed = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
    assert failed == ["journal_lines_have_accounts_and_rates"]
    # The blocking check stops the close there: nothing is reconciled on unmapped journals,
    # and the journals themselves are not committed (the partition is not materialized).
    warehouse = data_dir / "warehouse"
    assert not (warehouse / "reconciliation" / "2026-09.parquet").exists()
    assert not (warehouse / "journal_lines" / "2026-09.parquet").exists()
    materialized = {
        str(m.materialization.asset_key.path[-1]) for m in result.get_asset_materialization_events()
    }
    assert "journal_lines" not in materialized
    assert {"billable_usage", "invoice_lines", "revenue_schedule"} <= materialized
    # What failed is kept aside for whoever investigates.
    lines = pl.read_parquet(warehouse / "_rejected" / "journal_lines" / "2026-09.parquet")
    unmapped = lines.filter(pl.col("account").is_null())
    assert set(unmapped["product_family"]) == {"seats"}
    assert set(unmapped["entity_id"]) == {"EU01"}


def schedule(
    amount: str, start: date, end: date, periods: list[str], currency: str = "USD"
) -> dict[str, Decimal]:
    """Recognised per month for one recurring line, month by month."""
    line = {
        "period": start.strftime("%Y-%m"),
        "invoice_date": start,
        "document_type": "invoice",
        "invoice_id": "INV-X",
        "line_id": "INV-X-1",
        "entity_id": "US01",
        "customer_id": "CUST-0001",
        "contract_id": "C-1",
        "plan_id": "p",
        "charge_id": "platform",
        "product_id": "platform",
        "kind": "recurring",
        "service_start": start,
        "service_end": end,
        "quantity": D(1),
        "currency": currency,
        "amount_precise": D(amount),
        "amount": D(amount),
        "prepaid_applied": D(0),
        "source_ref": "x",
        "description": "x",
    }
    history = pa.Table.from_pylist([line])
    history = history.cast(
        pa.schema(
            [
                pa.field(f.name, pa.decimal128(38, 12)) if pa.types.is_decimal(f.type) else f
                for f in history.schema
            ]
        )
    )
    out: dict[str, Decimal] = {}
    for period in periods:
        first, last = month(period)
        frame = pl.from_arrow(
            schedule_month(duckdb.connect(), history, empty_prepaid_balances(), period, first, last)
        )
        assert isinstance(frame, pl.DataFrame)
        recognized = frame["recognized"].sum() if frame.height else D(0)
        assert isinstance(recognized, Decimal)
        out[period] = recognized
    return out


def empty_prepaid_balances() -> pa.Table:
    from rating.invoice import PREPAID_SCHEMA

    return PREPAID_SCHEMA.empty_table()


def test_a_ratable_schedule_rounds_cumulatively_and_sums_to_its_line() -> None:
    # 1000.00 over 90 days from January 15th: cumulative 17, 45, 76, 90 days.
    assert schedule(
        "1000.00",
        date(2026, 1, 15),
        date(2026, 4, 14),
        ["2026-01", "2026-02", "2026-03", "2026-04"],
    ) == {
        "2026-01": D("188.89"),  # 188.888…
        "2026-02": D("311.11"),  # 500.00 − 188.89
        "2026-03": D("344.44"),  # 844.44 − 500.00
        "2026-04": D("155.56"),  # 1000.00 − 844.44
    }
    # A leap year's February has 29 days: 290.00 over it is 10.00 a day, all in February.
    assert schedule("290.00", date(2028, 2, 1), date(2028, 2, 29), ["2028-02", "2028-03"]) == {
        "2028-02": D("290.00"),
        "2028-03": D(0),
    }
    # Yen have no minor unit: 100,000 over 3 days from the 30th of a 31-day month.
    assert schedule(
        "100000", date(2026, 10, 30), date(2026, 11, 1), ["2026-10", "2026-11"], currency="JPY"
    ) == {"2026-10": D("66667"), "2026-11": D("33333")}


@settings(max_examples=25, deadline=None)
@given(
    cents=st.integers(min_value=-10_000_000, max_value=10_000_000),
    start=st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)),
    days=st.integers(min_value=1, max_value=400),
)
def test_a_schedule_never_drifts(cents: int, start: date, days: int) -> None:
    amount = (D(cents) / 100).quantize(D("0.01"))
    end = start + timedelta(days=days - 1)
    periods = []
    first = start.replace(day=1)
    while first <= end:
        periods.append(first.strftime("%Y-%m"))
        first = (first + timedelta(days=32)).replace(day=1)
    recognized = schedule(str(amount), start, end, periods)
    assert sum(recognized.values()) == amount
    served = 0
    for period, value in recognized.items():
        first, last = month(period)
        in_month = (min(last, end) - max(first, start)).days + 1
        served += in_month
        exact = amount * served / days
        cumulative = sum(v for p, v in recognized.items() if p <= period)
        assert cumulative == exact.quantize(D("0.01"), rounding=ROUND_HALF_EVEN)
        assert abs(value - amount * in_month / days) <= D("0.01")


def test_a_journal_line_gone_missing_is_an_unexplained_variance(
    data_dir: Path, resources: dict[str, object]
) -> None:
    from checks.journals import reconciliation_explained
    from rating.reconcile import close_controls
    from rating.terms import reference_tables, terms_in_force
    from resources.reference import ReferenceData

    books(data_dir)
    assert close(resources, "2026-09").success
    warehouse = data_dir / "warehouse"

    def read(table: str) -> pa.Table:
        return pl.read_parquet(warehouse / table / "2026-09.parquet").to_arrow()

    journals = pl.read_parquet(warehouse / "journal_lines" / "2026-09.parquet")
    # Drop the revenue release of C-1's yearly fee.
    dropped = journals.filter(
        ~(
            (pl.col("category") == "revenue_release")
            & (pl.col("account_role") == "revenue")
            & (pl.col("contract_id") == "C-1")
        )
    )
    ref = ReferenceData(data_dir / "reference")
    plans = ref.plans()
    con = duckdb.connect()
    first, last = month("2026-09")
    terms_in_force(con, reference_tables(plans, ref.contracts(plans)), first, last)
    empty = pl.read_parquet(warehouse / "revenue_schedule" / "2026-09.parquet").head(0)
    controls, _ = close_controls(
        con,
        period="2026-09",
        month_start=first,
        month_end=last,
        landing=pa.table(
            {
                "received_date": pa.array([], pa.date32()),
                "raw_lines": pa.array([], pa.int64()),
                "accepted": pa.array([], pa.int64()),
                "duplicates": pa.array([], pa.int64()),
                "quarantined": pa.array([], pa.int64()),
            }
        ),
        quarantined=pa.table(
            {
                "received_date": pa.array([], pa.date32()),
                "reason": pa.array([], pa.string()),
                "customer_id": pa.array([], pa.string()),
            }
        ),
        daily=pa.table(
            {
                "customer_id": pa.array([], pa.string()),
                "meter": pa.array([], pa.string()),
                "usage_date": pa.array([], pa.date32()),
                "event_count": pa.array([], pa.int64()),
            }
        ),
        customers=ref.customers().select("customer_id", "entity_id").to_arrow(),
        billable=read("billable_usage"),
        invoices=read("invoice_lines"),
        schedule=read("revenue_schedule"),
        schedule_before=empty.to_arrow(),
        journals=dropped.to_arrow(),
        prepaid=read("prepaid_balances"),
    )
    frame = pl.from_arrow(controls)
    assert isinstance(frame, pl.DataFrame)
    unexplained = frame.filter(pl.col("status") == "unexplained")
    assert unexplained.select("entity_id", "currency", "control", "variance").rows() == [
        ("EU01", "USD", "revenue_journalised", D("3008.22"))
    ]
    outcome = reconciliation_explained(frame)
    assert not outcome.passed
    assert outcome.description == "1 control(s) with an unexplained variance"


def test_closing_locks_the_month_and_a_locked_month_is_never_rewritten(
    data_dir: Path,
    resources: dict[str, object],
    settings: object,
    dagster_home: Path,
    capsys: object,
) -> None:
    import hashlib

    import pytest

    from dagster_project import cli
    from resources.control_db import ControlDb, PeriodLockedError

    books(data_dir)
    close_month(settings, "2026-09", "alice")
    db = ControlDb(settings.control_db_url)  # type: ignore[attr-defined]
    lock = db.lock("2026-09")
    assert lock is not None and lock.locked_by == "alice"
    # The reference data the close used is kept, under its digest.
    snapshot = Path(lock.snapshot_path)
    assert (snapshot / "contracts.yaml").read_bytes() == (
        data_dir / "reference" / "contracts.yaml"
    ).read_bytes()
    h = hashlib.sha256()
    for path in sorted(snapshot.iterdir()):
        h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    assert h.hexdigest() == lock.reference_digest
    assert db.open_period() == "2026-10"

    invoices = data_dir / "warehouse" / "invoice_lines" / "2026-09.parquet"
    before = invoices.read_bytes()
    # Materialising the month's assets directly is refused too: every step ends skipped,
    # nothing is materialised or checked, and the run says why in one line.
    instance = dg.DagsterInstance.ephemeral()
    refused = dg.materialize(
        ASSETS, partition_key="2026-09", resources=resources, instance=instance
    )
    assert refused.success
    assert refused.get_asset_materialization_events() == []
    assert refused.get_asset_check_evaluations() == []
    run = instance.get_run_by_id(refused.run_id)
    assert run is not None
    assert re.match(
        r"2026-09 is locked \(by alice at .*\): it is never closed again; to restate it, run "
        r"reprocess_job for partition 2026-09",
        run.tags["meterclose/refused"],
    ), run.tags
    assert invoices.read_bytes() == before
    with pytest.raises(SystemExit, match=r"2026-09 is locked \(by alice at .*reprocess_job"):
        close_month(settings, "2026-09", "bob")
    assert invoices.read_bytes() == before
    with pytest.raises(PeriodLockedError, match=r"the open period is 2026-10"):
        db.record_lock("2026-11", "carol", "run", "digest", "path")
    # Closed by the schedule (no lock), reviewed, then locked by a controller.
    close_month(settings, "2026-10", None)
    assert db.open_period() == "2026-10"
    lock_argv = ["--data-dir", str(data_dir), "lock", "--period", "2026-10", "--by", "dave"]
    with pytest.raises(SystemExit, match=r"journals of EU01, US01 are not approved"):
        cli.main(lock_argv)
    approve = ["--data-dir", str(data_dir), "approve", "--period", "2026-10", "--by", "erin"]
    assert cli.main(approve) == 0
    assert cli.main(lock_argv) == 0
    approved = [e for e in db.outbox("2026-10") if e["event_type"] == "RevenueJournalApproved"]
    assert [json.loads(e["payload"])["data"]["approved_by"] for e in approved] == ["erin"] * 2
    issued = [e for e in db.outbox("2026-10") if e["event_type"] == "InvoiceIssued"]
    assert issued and all(e["state"] == "pending" for e in issued)
    assert [(lock.period, lock.locked_by) for lock in db.locks()] == [
        ("2026-09", "alice"),
        ("2026-10", "dave"),
    ]
    assert db.open_period() == "2026-11"
    db.dispose()


def test_late_events_for_a_locked_month_are_billed_in_the_open_period(
    data_dir: Path,
    resources: dict[str, object],
    settings: object,
    land: object,
    dagster_home: Path,
) -> None:
    from dagster_project import cli
    from resources.control_db import ControlDb

    books(data_dir)

    arrive = calls_arriving(land, resources)

    # Three API calls of C-3 in September: 5.00 flat + 3 × 1.00 = 8.00.
    arrive(date(2026, 9, 3), "a", 3, "2026-09-03T10:00:00Z")
    close_month(settings, "2026-09", "alice")
    invoices = data_dir / "warehouse" / "invoice_lines"
    september = pl.read_parquet(invoices / "2026-09.parquet")
    original = september.filter(
        (pl.col("contract_id") == "C-3") & (pl.col("charge_id") == "api-calls")
    )
    assert original["amount"].to_list() == [D("8.00")]
    locked = (invoices / "2026-09.parquet").read_bytes()

    # Two more September calls land on October 2nd, after September is locked.
    arrive(date(2026, 10, 2), "late", 2, "2026-09-29T10:00:00Z")
    close_month(settings, "2026-10", None)
    first_run = (invoices / "2026-10.parquet").read_bytes()
    close_month(settings, "2026-10", None)
    assert (invoices / "2026-10.parquet").read_bytes() == first_run  # reruns book it once
    october = pl.read_parquet(invoices / "2026-10.parquet")
    adjustment = october.filter(pl.col("kind") == "prior_period_adjustment")
    # Priced at September's terms, on the five calls: 10.00, of which 8.00 was billed.
    assert adjustment.select(
        "invoice_id", "contract_id", "service_period", "adjusts_line_id", "amount"
    ).rows() == [("INV-C-3-20261101-U", "C-3", "2026-09", original["line_id"][0], D("2.00"))]
    assert (invoices / "2026-09.parquet").read_bytes() == locked

    # Booked in October: recognised there, accrued with October's usage, reconciled.
    warehouse = data_dir / "warehouse"
    schedule = pl.read_parquet(warehouse / "revenue_schedule" / "2026-10.parquet")
    late = schedule.filter(pl.col("kind") == "prior_period_adjustment")
    assert late.select("period", "recognized").rows() == [("2026-10", D("2.00"))]
    journals = pl.read_parquet(warehouse / "journal_lines" / "2026-10.parquet")
    booked = journals.filter(
        (pl.col("line_id") == adjustment["line_id"][0]) & (pl.col("account_role") == "revenue")
    )
    assert booked.select("category", "account", "credit").rows() == [
        ("usage_accrual", "4100", D("2"))
    ]
    controls = pl.read_parquet(warehouse / "reconciliation" / "2026-10.parquet")
    assert "unexplained" not in set(controls["status"])
    queue = pl.read_parquet(warehouse / "exceptions" / "2026-10.parquet")
    assert "prior_period_adjusted" in set(queue["kind"])

    # A controller asks to reprocess September (reprocess_job, through the CLI): the
    # request is recorded, and the difference it makes shows at once — the 2.00 October's
    # close books, once — without touching September.
    reprocess = ["--data-dir", str(data_dir), "reprocess", "--period", "2026-09"]
    assert cli.main([*reprocess, "--reason", "credit granted late", "--by", "carol"]) == 0
    restated = pl.read_parquet(warehouse / "restatement" / "2026-09.parquet")
    assert restated.select("invoice_id", "kind", "amount", "request_id").rows() == [
        ("INV-C-3-20261101-U", "prior_period_adjustment", D("2.00"), 1)
    ]
    assert (invoices / "2026-09.parquet").read_bytes() == locked
    db = ControlDb(settings.control_db_url)  # type: ignore[attr-defined]
    (request,) = db.reprocess_requests()
    assert (request["period"], request["requested_by"], request["booked_in"]) == (
        "2026-09",
        "carol",
        None,
    )
    assert db.reprocessing("2026-10") == ["2026-09"]
    close_month(settings, "2026-10", None)
    assert (invoices / "2026-10.parquet").read_bytes() == first_run  # still booked once
    cli.approve_period(settings, "2026-10", None, "bob")  # type: ignore[arg-type]
    cli.lock_period(settings, "2026-10", "bob")  # type: ignore[arg-type]
    assert db.reprocessing("2026-10") == ["2026-09"]  # October's own rerun would book it
    assert db.reprocessing("2026-11") == []
    db.dispose()


def test_deferred_revenue_clears_in_the_functional_currency_too(
    data_dir: Path, resources: dict[str, object]
) -> None:
    # 250.00 of seats from September 15th, anniversary billing, at 0.9213: 230.33 EUR
    # deferred; released 16 and 14 days of 30 — 133.33 and 116.67 USD — whose functional
    # amounts must add back to 230.33, not to 122.84 + 107.49 = 230.33 ± a cent by chance.
    fx = "date,from_currency,to_currency,rate,rate_type\n2026-08-01,USD,EUR,0.9213,daily\n"
    books(
        data_dir,
        [
            contract(
                customer_id="CUST-0003", start_date="2026-09-15", billing_alignment="anniversary"
            )
        ],
        fx=fx,
    )
    for period in ("2026-09", "2026-10"):
        assert close(resources, period).success
    journals = pl.read_parquet(data_dir / "warehouse" / "journal_lines" / "*.parquet")
    deferred = journals.filter(pl.col("account_role") == "deferred_revenue")
    for _, rows in deferred.group_by("line_id"):
        if rows["debit"].sum() == rows["credit"].sum():  # fully recognised
            assert rows["functional_debit"].sum() == rows["functional_credit"].sum()
    seats = deferred.filter(pl.col("memo").str.contains("seats-fee|Deferred revenue released"))
    assert seats.height > 0


def test_prepaid_credit_sold_in_the_month_reconciles(
    data_dir: Path, resources: dict[str, object]
) -> None:
    books(
        data_dir,
        [
            contract(
                customer_id="CUST-0001",
                start_date="2026-09-16",
                prepaid_credit={"amount": "1000.00", "expires_on": "2027-09-15"},
            )
        ],
    )
    assert close(resources, "2026-09").success
    controls = pl.read_parquet(data_dir / "warehouse" / "reconciliation" / "2026-09.parquet")
    controls = controls.filter(pl.col("control") != "landing_days_complete")
    assert set(controls["status"]) == {"tied"}
    by_control = {r["control"]: r["actual"] for r in controls.iter_rows(named=True)}
    assert by_control["prepaid_sold_journalised"] == D("1000")
    assert by_control["prepaid_drawn_journalised"] == D("725")  # 600.00 + 125.00 of fees


def test_an_adjusted_month_restated_again_adds_nothing(
    data_dir: Path,
    resources: dict[str, object],
    settings: object,
    land: object,
    dagster_home: Path,
) -> None:

    books(data_dir, [contract(contract_id="C-3", customer_id="CUST-0001", start_date="2026-08-01")])

    arrive = calls_arriving(land, resources)

    arrive(date(2026, 8, 3), "a", 3, "2026-08-03T10:00:00Z")
    close_month(settings, "2026-08", "alice")
    arrive(date(2026, 9, 2), "late", 2, "2026-08-29T10:00:00Z")
    close_month(settings, "2026-09", "alice")
    close_month(settings, "2026-10", "alice")
    invoices = pl.read_parquet(data_dir / "warehouse" / "invoice_lines" / "*.parquet")
    adjustments = invoices.filter(pl.col("kind") == "prior_period_adjustment")
    # August's two late calls, billed once, in September; October, which restates both
    # August and September, adds nothing.
    assert adjustments.select("period", "service_period", "amount").rows() == [
        ("2026-09", "2026-08", D("2.00"))
    ]


def test_the_approve_job_records_the_approver_from_its_launchpad_config(
    data_dir: Path, resources: dict[str, object], settings: object
) -> None:
    from dagster_project.jobs import approve_job
    from resources.control_db import ControlDb

    books(data_dir)
    assert close(resources, "2026-09").success

    instance = dg.DagsterInstance.ephemeral()

    def run(period: str, **config: object) -> dg.ExecuteInProcessResult:
        return approve_job.execute_in_process(
            run_config={"ops": {"approve_period_journals": {"config": config}}},
            resources=resources,
            partition_key=period,
            instance=instance,
            raise_on_error=False,
        )

    def refusal(result: dg.ExecuteInProcessResult) -> str:
        # A refusal ends the run without failing it, and says why as a run tag.
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        return run.tags["meterclose/refused"]

    assert "cannot also approve it (segregation of duties)" in refusal(
        run("2026-09", approved_by=PREPARER)
    )
    result = run("2026-09", approved_by="frank", entities=["US01"])
    assert result.success
    assert result.output_for_node("approve_period_journals") == ["US01"]
    db = ControlDb(settings.control_db_url)  # type: ignore[attr-defined]
    approvals = db.approvals("2026-09")
    assert {e: a["approved_by"] for e, a in approvals.items()} == {"US01": "frank"}
    events = [e for e in db.outbox("2026-09") if e["event_type"] == "RevenueJournalApproved"]
    assert [json.loads(e["payload"])["data"]["entity_id"] for e in events] == ["US01"]

    refused = run("2026-09", approved_by="frank", entities=["XX99"])
    assert refusal(refused) == "2026-09 has no journals for entity XX99"
    assert refusal(run("2026-10", approved_by="frank")).startswith(
        "2026-10 has not been closed, so there is nothing to approve"
    )
    db.dispose()


def test_a_month_without_its_fx_quotes_does_not_close_and_a_fallback_is_a_setting(
    data_dir: Path, settings: object, dagster_home: Path
) -> None:
    import dataclasses

    books(data_dir)
    # The feed skips weekends in October, and quotes 0.80 on Friday 30 October: the month
    # ends on a Saturday.
    october = [date(2026, 10, 1) + timedelta(days=n) for n in range(31)]
    weekdays = "".join(
        f"{d},USD,EUR,{'0.80' if d.day == 30 else '0.95'},daily\n"
        for d in october
        if d.weekday() < 5
    )
    fx = daily_fx(FX, through=date(2026, 9, 30)) + weekdays
    (data_dir / "reference" / "fx_rates.csv").write_text(fx)
    close_month(settings, "2026-09", None)

    with pytest.raises(SystemExit) as refused:
        close_month(settings, "2026-10", None)
    assert str(refused.value) == (
        "2026-10 cannot close: no FX rate for EU01 USD→EUR on 2026-10-03 … 2026-10-04 "
        "(2 days); EU01 USD→EUR on 2026-10-10 … 2026-10-11 (2 days); EU01 USD→EUR on "
        "2026-10-17 … 2026-10-18 (2 days); EU01 USD→EUR on 2026-10-24 … 2026-10-25 (2 days); "
        "EU01 USD→EUR on 2026-10-31; add the rates to fx_rates.csv (a feed that skips "
        "weekends: allow an older quote with METERCLOSE_FX_FALLBACK_MAX_AGE_DAYS)"
    )
    assert not (data_dir / "warehouse" / "journal_lines" / "2026-10.parquet").exists()

    # A fallback of two calendar days: Saturday's accrual takes Friday's quote, and says so.
    lenient = dataclasses.replace(settings, fx_fallback_max_age_days=2)  # type: ignore[type-var]
    close_month(lenient, "2026-10", None)
    journals = pl.read_parquet(data_dir / "warehouse" / "journal_lines" / "2026-10.parquet")
    accrued = journals.filter(
        (pl.col("category") == "usage_accrual")
        & (pl.col("entity_id") == "EU01")
        & pl.col("fx_rate").is_not_null()
    )
    assert accrued.height > 0
    assert set(accrued.select("fx_rate_date", "fx_quote_date", "fx_rate").rows()) == {
        (date(2026, 10, 31), date(2026, 10, 30), D("0.8"))
    }
    # Every converted line carries the quote it rests on, never one newer than asked for.
    foreign = journals.filter(
        (pl.col("currency") != pl.col("functional_currency")) & pl.col("fx_rate").is_not_null()
    )
    assert foreign.filter(pl.col("fx_quote_date").is_null()).height == 0
    assert foreign.filter(pl.col("fx_quote_date") > pl.col("fx_rate_date")).height == 0
    assert (
        foreign.filter(
            (pl.col("fx_rate_date") - pl.col("fx_quote_date")).dt.total_days() > 2
        ).height
        == 0
    )


def test_a_credit_memo_owed_at_month_end_is_a_liability_not_a_negative_receivable(
    data_dir: Path, resources: dict[str, object]
) -> None:
    # An SLA credit of 100.00 USD for September, issued on 1 October.
    books(
        data_dir,
        [contract(contract_id="C-3", customer_id="CUST-0001", start_date="2026-09-01")],
        credits="CR-1,C-3,2026-09,100.00,USD,api,SLA breach\n",
    )
    for period in ("2026-09", "2026-10"):
        assert close(resources, period).success
    journals = pl.read_parquet(data_dir / "warehouse" / "journal_lines" / "*.parquet")

    def lines(category: str, role: str) -> list[tuple[object, ...]]:
        return (
            journals.filter(
                (pl.col("category") == category)
                & (pl.col("account_role") == role)
                & (pl.col("invoice_id") == "CM-CR-1")
            )
            .select("accounting_date", "account", "debit", "credit")
            .rows()
        )

    # 30 September: the credit is owed, a liability (2400), against revenue; …
    assert lines("usage_accrual", "customer_credits") == [
        (date(2026, 9, 30), "2400", D(0), D("100"))
    ]
    assert lines("usage_accrual", "unbilled_receivable") == []
    # … 1 October: reversed, and the memo issued credits the receivable.
    assert lines("accrual_reversal", "customer_credits") == [
        (date(2026, 10, 1), "2400", D("100"), D(0))
    ]
    assert lines("billing", "receivable") == [(date(2026, 10, 1), "1100", D(0), D("100"))]
    # Nothing nets to a credit inside unbilled receivable, in any month.
    unbilled = journals.filter(pl.col("account_role") == "unbilled_receivable")
    net = unbilled.group_by("period", "entity_id", "currency").agg(
        net=(pl.col("debit") - pl.col("credit")).sum()
    )
    assert net.filter(pl.col("net") < 0).height == 0
    controls = pl.read_parquet(data_dir / "warehouse" / "reconciliation" / "*.parquet")
    roll = controls.filter(pl.col("control") == "accruals_roll_forward")
    assert set(roll["status"]) == {"tied"}
