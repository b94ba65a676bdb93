"""Invoice lines on hand-written terms: recurring fees in advance, prorated by day,
anniversaries, yearly fees, co-terming, mid-period changes, commitments, prepaid credit
and credits — amounts to the cent, worked out by hand in the comments."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import hypothesis.strategies as st
import polars as pl
import pyarrow as pa
import pytest
import yaml
from hypothesis import given, settings

from rating.billing import billable_usage
from rating.errors import ReferenceDataError
from rating.ingest import connect, meters_table
from rating.invoice import invoice_lines
from rating.terms import reference_tables, terms_in_force
from resources.reference import ReferenceData

PRODUCTS = (
    "product_id,name,product_family,business_unit\n"
    "platform,Platform,platform,core\napi,API,api,core\nseats,Seats,seats,core\n"
)
USAGE = {
    "charge_id": "api-calls",
    "meter": "api_calls",
    "product_id": "api",
    "model": "graduated",
    "tiers": [
        {"up_to": "10", "unit_amount": "1", "flat_amount": "5"},
        {"up_to": None, "unit_amount": "0.5"},
    ],
}
GROWTH = {
    "plan_id": "growth-usd",
    "currency": "USD",
    "recurring": [
        {
            "charge_id": "platform",
            "product_id": "platform",
            "amount": "1200.00",
            "interval": "month",
        },
        {
            "charge_id": "seats-fee",
            "product_id": "seats",
            "amount": "25.00",
            "interval": "month",
            "quantity": "10",
        },
    ],
    "usage": [USAGE],
}
SCALE = {
    "plan_id": "scale-usd",
    "currency": "USD",
    "recurring": [
        {
            "charge_id": "platform",
            "product_id": "platform",
            "amount": "3000.00",
            "interval": "month",
        }
    ],
    "usage": [USAGE],
}
YEARLY = {
    "plan_id": "yearly-usd",
    "currency": "USD",
    "recurring": [
        {
            "charge_id": "platform",
            "product_id": "platform",
            "amount": "36600.00",
            "interval": "year",
        }
    ],
    "usage": [],
}
ADDON = {
    "plan_id": "addon-usd",
    "currency": "USD",
    "recurring": [
        {
            "charge_id": "sandbox",
            "product_id": "platform",
            "amount": "1200.00",
            "interval": "year",
            "quantity": "2",
        }
    ],
    "usage": [],
}
PLANS = [GROWTH, SCALE, YEARLY, ADDON]


def contract(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "contract_id": "C-1",
        "customer_id": "CUST-0001",
        "plan_id": "growth-usd",
        "start_date": "2025-01-01",
        "end_date": None,
        "billing_alignment": "calendar",
        "amendments": [],
    }
    base.update(changes)
    return base


def month(period: str) -> tuple[date, date]:
    first = date.fromisoformat(f"{period}-01")
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, date.fromordinal(following.toordinal() - 1)


class Books:
    """Reference files in a temporary data root, invoiced month after month (no usage
    landed, so usage lines bill only their first tier's flat fee of 5.00)."""

    def __init__(self, root: Path, contracts: list[dict[str, Any]], credits: str = "") -> None:
        reference = root / "reference"
        (reference / "products.csv").write_text(PRODUCTS)
        (reference / "plans.yaml").write_text(yaml.safe_dump({"plans": PLANS}))
        (reference / "contracts.yaml").write_text(yaml.safe_dump({"contracts": contracts}))
        if credits:
            (reference / "credits.csv").write_text(
                "credit_id,contract_id,period,amount,currency,product_id,reason\n" + credits
            )
        self.ref = ReferenceData(reference)
        self.previous: pa.Table | None = None

    def close(self, period: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        first, last = month(period)
        plans = self.ref.plans()
        contracts = self.ref.contracts(plans)
        con = connect()
        terms_in_force(con, reference_tables(plans, contracts), first, last)
        rated = billable_usage(con, [], meters_table(self.ref.meters()), period, first, last)
        customers = self.ref.customers().select("customer_id", "entity_id", "currency")
        lines, balances = invoice_lines(
            con,
            rated,
            customers.to_arrow(),
            self.ref.credits(contracts, plans),
            self.previous,
            period,
            first,
            last,
        )
        self.previous = balances
        frame, prepaid = pl.from_arrow(lines), pl.from_arrow(balances)
        assert isinstance(frame, pl.DataFrame) and isinstance(prepaid, pl.DataFrame)
        return frame, prepaid


def fees(frame: pl.DataFrame, charge: str | None = None) -> list[tuple[Any, ...]]:
    """(invoice date, kind, service start, service end, amount) of recurring lines."""
    lines = frame.filter(pl.col("kind").str.starts_with("recurring"))
    if charge is not None:
        lines = lines.filter(pl.col("charge_id") == charge)
    return lines.select("invoice_date", "kind", "service_start", "service_end", "amount").rows()


def D(text: str | int) -> Decimal:
    return Decimal(text)


def test_calendar_fees_are_billed_in_advance_and_a_partial_first_month_prorated(
    data_dir: Path,
) -> None:
    books = Books(data_dir, [contract(start_date="2026-09-14")])
    september, _ = books.close("2026-09")
    # 17 of September's 30 days: 1200 × 17/30 = 680.00; seats 10 × 25 × 17/30 = 141.666… → 141.67
    assert fees(september) == [
        (date(2026, 9, 14), "recurring", date(2026, 9, 14), date(2026, 9, 30), D("680.00")),
        (date(2026, 9, 14), "recurring", date(2026, 9, 14), date(2026, 9, 30), D("141.67")),
    ]
    assert set(september.filter(pl.col("kind") == "recurring")["invoice_id"]) == {
        "INV-C-1-20260914-R"
    }
    october, _ = books.close("2026-10")
    assert [f[4] for f in fees(october)] == [D("1200.00"), D("250.00")]
    assert set(october.filter(pl.col("kind") == "recurring")["invoice_date"]) == {date(2026, 10, 1)}


def test_anniversary_months_run_from_the_start_day_and_stay_on_it(data_dir: Path) -> None:
    # Started on January 31st: periods start Jan 31, Feb 28 (no 31st), Mar 31, Apr 30, …
    books = Books(
        data_dir,
        [contract(start_date="2026-01-31", billing_alignment="anniversary")],
    )
    february, _ = books.close("2026-02")
    assert fees(february, "platform") == [
        (date(2026, 2, 28), "recurring", date(2026, 2, 28), date(2026, 3, 30), D("1200.00"))
    ]
    march, _ = books.close("2026-03")
    assert fees(march, "platform") == [
        (date(2026, 3, 31), "recurring", date(2026, 3, 31), date(2026, 4, 29), D("1200.00"))
    ]


def test_yearly_fees_run_from_the_anniversary_over_a_leap_year(data_dir: Path) -> None:
    # Period 2027-06-15 … 2028-06-14 holds Feb 29th: 366 days. The contract ends on
    # 2027-12-31, so 200 of them are billed: 36600 × 200/366 = 20000.00.
    books = Books(
        data_dir,
        [contract(plan_id="yearly-usd", start_date="2027-06-15", end_date="2027-12-31")],
    )
    june, _ = books.close("2027-06")
    assert fees(june) == [
        (date(2027, 6, 15), "recurring", date(2027, 6, 15), date(2027, 12, 31), D("20000.00"))
    ]
    july, _ = books.close("2027-07")
    assert fees(july) == []  # billed once, in advance, for the whole period


def test_a_co_termed_add_on_runs_to_the_main_contracts_anniversary(data_dir: Path) -> None:
    # The add-on starts 2026-10-12; the main contract's anniversary is April 24th, so its
    # first year runs to 2027-04-23: 194 of 365 days × 1200 × 2 = 1275.616… → 1275.62.
    books = Books(
        data_dir,
        [
            contract(start_date="2025-04-24"),
            contract(
                contract_id="C-2",
                plan_id="addon-usd",
                start_date="2026-10-12",
                co_term_with="C-1",
            ),
        ],
    )
    october, _ = books.close("2026-10")
    assert fees(october, "sandbox") == [
        (date(2026, 10, 12), "recurring", date(2026, 10, 12), date(2027, 4, 23), D("1275.62"))
    ]


def test_a_quantity_change_bills_the_rest_of_the_period_on_its_day(data_dir: Path) -> None:
    books = Books(
        data_dir,
        [
            contract(
                amendments=[
                    {
                        "effective_date": "2026-10-13",
                        "type": "quantity_change",
                        "charge_id": "seats-fee",
                        "quantity": "35",
                    }
                ]
            )
        ],
    )
    october, _ = books.close("2026-10")
    # 25 more seats × 25.00 for 19 of 31 days = 383.064… → 383.06, on an invoice of the 13th.
    assert fees(october, "seats-fee") == [
        (date(2026, 10, 1), "recurring", date(2026, 10, 1), date(2026, 10, 31), D("250.00")),
        (
            date(2026, 10, 13),
            "recurring_adjustment",
            date(2026, 10, 13),
            date(2026, 10, 31),
            D("383.06"),
        ),
    ]
    adjustment = october.filter(pl.col("kind") == "recurring_adjustment")
    assert adjustment["invoice_id"].to_list() == ["INV-C-1-20261013-R"]
    november, _ = books.close("2026-11")
    assert fees(november, "seats-fee")[0][4] == D("875.00")  # 35 × 25.00 from then on


def test_a_cancellation_credits_the_unused_part_of_a_yearly_fee(data_dir: Path) -> None:
    books = Books(
        data_dir,
        [
            contract(
                plan_id="yearly-usd",
                start_date="2026-06-01",
                amendments=[{"effective_date": "2026-10-20", "type": "cancellation"}],
            )
        ],
    )
    june, _ = books.close("2026-06")
    # Known in June: the whole year, 2026-06-01 … 2027-05-31 (365 days).
    assert fees(june)[0][4] == D("36600.00")
    october, _ = books.close("2026-10")
    # Unused from the 20th: 224 of 365 days × 36600 = 22461.369… → −22461.37.
    assert fees(october) == [
        (
            date(2026, 10, 20),
            "recurring_adjustment",
            date(2026, 10, 20),
            date(2027, 5, 31),
            D("-22461.37"),
        )
    ]
    november, _ = books.close("2026-11")
    assert fees(november) == []


def test_an_upgrade_credits_the_old_plan_and_charges_the_new_for_the_rest(
    data_dir: Path,
) -> None:
    books = Books(
        data_dir,
        [
            contract(
                amendments=[
                    {"effective_date": "2026-10-16", "type": "plan_change", "plan_id": "scale-usd"}
                ]
            )
        ],
    )
    october, _ = books.close("2026-10")
    platform = (
        october.filter(pl.col("charge_id") == "platform")
        .select("plan_id", "invoice_date", "amount")
        .rows()
    )
    # 16 of 31 days left: growth −1200 × 16/31 = −619.35; scale 3000 × 16/31 = 1548.39.
    assert platform == [
        ("growth-usd", date(2026, 10, 1), D("1200.00")),
        ("growth-usd", date(2026, 10, 16), D("-619.35")),
        ("scale-usd", date(2026, 10, 16), D("1548.39")),
    ]
    # The growth plan's seats lapse with it: 250 × 16/31 = 129.03 credited.
    assert fees(october, "seats-fee")[-1][4] == D("-129.03")


def test_usage_invoice_commitment_true_up_and_deterministic_ids(data_dir: Path) -> None:
    books = Books(
        data_dir,
        [
            contract(
                start_date="2026-09-16",
                minimum_commitment={"amount": "600.00", "product_id": "platform"},
            )
        ],
    )
    september, _ = books.close("2026-09")
    usage_invoice = september.filter(pl.col("invoice_id") == "INV-C-1-20261001-U")
    assert usage_invoice["invoice_date"].unique().to_list() == [date(2026, 10, 1)]
    # 15 of 30 days in force: 300.00 committed; usage billed 5.00 (first tier's flat fee).
    assert usage_invoice.select("kind", "amount").rows() == [
        ("usage", D("5.00")),
        ("commitment_true_up", D("295.00")),
    ]
    again = Books(
        data_dir,
        [
            contract(
                start_date="2026-09-16",
                minimum_commitment={"amount": "600.00", "product_id": "platform"},
            )
        ],
    )
    rerun, _ = again.close("2026-09")
    assert rerun.equals(september)
    assert september["line_id"].n_unique() == september.height


def test_prepaid_credit_pays_in_order_carries_over_and_expires(data_dir: Path) -> None:
    books = Books(
        data_dir,
        [
            contract(
                prepaid_credit={"amount": "1500.00", "expires_on": "2026-11-15"},
                plan_id="scale-usd",
            )
        ],
    )
    september, prepaid = books.close("2026-09")
    # Sep 1: the platform fee 3000.00 takes the whole 1500.00; Oct 1's usage invoice gets none.
    drawn = september.filter(pl.col("prepaid_applied") > 0).select("kind", "prepaid_applied")
    assert drawn.rows() == [("recurring", D("1500.00"))]
    assert september.filter(pl.col("kind") == "prepaid_drawdown").select(
        "invoice_id", "amount"
    ).rows() == [("INV-C-1-20260901-R", D("-1500.00"))]
    assert prepaid.select("opening", "drawn", "expired", "closing").rows() == [
        (D("1500.00"), D("1500.00"), D("0"), D("0"))
    ]

    books = Books(
        data_dir,
        [
            contract(
                prepaid_credit={"amount": "3100.00", "expires_on": "2026-10-15"},
                plan_id="scale-usd",
            )
        ],
    )
    september, prepaid = books.close("2026-09")
    # 3000.00 for September's fee, then 5.00 of usage on the October 1st invoice: 95.00 left.
    assert prepaid.select("drawn", "closing").rows() == [(D("3005.00"), D("95.00"))]
    october, prepaid = books.close("2026-10")
    # Carried over: 95.00 towards October's fee (Oct 1, before the expiry on the 15th); the
    # usage invoice of November 1st comes after it. Nothing is left to expire.
    assert prepaid.select("opening", "drawn", "expired", "closing").rows() == [
        (D("95.00"), D("95.00"), D("0"), D("0"))
    ]
    assert october.filter(pl.col("kind") == "prepaid_drawdown").select(
        "invoice_id", "amount"
    ).rows() == [("INV-C-1-20261001-R", D("-95.00"))]
    november, prepaid = books.close("2026-11")
    assert prepaid.height == 0  # expired before November: no balance to carry
    assert november["prepaid_applied"].sum() == 0


def test_unused_prepaid_credit_expires_as_breakage(data_dir: Path) -> None:
    books = Books(
        data_dir,
        [contract(prepaid_credit={"amount": "9000.00", "expires_on": "2026-10-15"})],
    )
    books.close("2026-09")  # 1200 + 250 fees + 5.00 usage: 1455.00 drawn, 7545.00 left
    _, prepaid = books.close("2026-10")
    # October 1st's fees (1450.00) are paid before the expiry; the rest expires.
    assert prepaid.select("opening", "drawn", "expired", "closing").rows() == [
        (D("7545.00"), D("1450.00"), D("6095.00"), D("0"))
    ]


def test_credits_become_credit_memos(data_dir: Path) -> None:
    books = Books(
        data_dir,
        [contract()],
        credits="CR-1,C-1,2026-09,100.00,USD,api,SLA breach: availability below 99.9%\n",
    )
    september, _ = books.close("2026-09")
    memo = september.filter(pl.col("document_type") == "credit_memo")
    assert memo.select("invoice_id", "kind", "product_id", "amount", "description").rows() == [
        ("CM-CR-1", "credit", "api", D("-100.00"), "SLA breach: availability below 99.9%")
    ]
    october, _ = books.close("2026-10")
    assert october.filter(pl.col("document_type") == "credit_memo").height == 0


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "CR-1,C-9,2026-09,100.00,USD,api,x",
            r"credit CR-1\.contract_id = 'C-9': unknown contract",
        ),
        ("CR-1,C-1,2026-09,100.00,EUR,api,x", r"credit CR-1\.currency = 'EUR': the contract's USD"),
        ("CR-1,C-1,2026-09,100.005,USD,api,x", r"credit CR-1\.amount = '100\.005': a positive"),
        ("CR-1,C-1,2024-09,100.00,USD,api,x", r"credit CR-1\.period = '2024-09': a month in which"),
        ("CR-1,C-1,2026-09,100.00,USD,nope,x", r"credit CR-1\.product_id = 'nope': one of"),
    ],
)
def test_bad_credits_are_refused_naming_file_key_and_value(
    data_dir: Path, row: str, message: str
) -> None:
    books = Books(data_dir, [contract()], credits=row + "\n")
    with pytest.raises(ReferenceDataError, match=r"credits\.csv: " + message):
        books.ref.credits()


def test_bad_co_terming_and_commitments_are_refused(data_dir: Path) -> None:
    books = Books(data_dir, [contract(co_term_with="C-7")])
    with pytest.raises(ReferenceDataError, match=r"C-1\.co_term_with = 'C-7': unknown contract"):
        books.ref.contracts()
    books = Books(data_dir, [contract(minimum_commitment={"amount": "10"})])
    with pytest.raises(
        ReferenceDataError, match=r"C-1\.minimum_commitment\.product_id = None: the product"
    ):
        books.ref.contracts()


def test_invoice_lines_asset_carries_balances_and_passes_its_checks(
    data_dir: Path, resources: dict[str, object]
) -> None:
    from assets.billing import billable_usage as billable_usage_asset
    from assets.invoice import invoice_lines as invoice_asset

    Books(data_dir, [contract(prepaid_credit={"amount": "2000.00", "expires_on": None})])
    for period in ("2026-08", "2026-09", "2026-10"):
        result = dg.materialize(
            [billable_usage_asset, invoice_asset],
            partition_key=period,
            resources=resources,
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert len(checks) == 6 and all(c.passed for c in checks)
    warehouse = data_dir / "warehouse"
    balances = pl.read_parquet(warehouse / "prepaid_balances" / "*.parquet")
    # Each month draws 1455.00 (fees 1450.00 + usage 5.00) until the balance runs out.
    assert balances.select("period", "opening", "drawn", "closing").rows() == [
        ("2026-08", D("2000.00"), D("1455.00"), D("545.00")),
        ("2026-09", D("545.00"), D("545.00"), D("0")),
        ("2026-10", D("0"), D("0"), D("0")),
    ]
    # A month's opening balance is the last one's closing: a gap is refused, not guessed.
    (warehouse / "prepaid_balances" / "2026-09.parquet").unlink()
    with pytest.raises(Exception, match=r"prepaid_balances for 2026-09 is missing"):
        dg.materialize([invoice_asset], partition_key="2026-10", resources=resources)


def test_prepaid_credit_sold_with_a_new_contract_is_invoiced_and_not_paid_by_itself(
    data_dir: Path,
) -> None:
    books = Books(
        data_dir,
        [
            contract(
                start_date="2026-09-16",
                prepaid_credit={"amount": "1000.00", "expires_on": "2027-09-15"},
            )
        ],
    )
    september, prepaid = books.close("2026-09")
    purchase = september.filter(pl.col("kind") == "prepaid_purchase")
    assert purchase.select("invoice_id", "invoice_date", "amount", "prepaid_applied").rows() == [
        ("INV-C-1-20260916-P", date(2026, 9, 16), D("1000.00"), D("0"))
    ]
    # The fees of the 16th (1200 × 15/30 = 600.00, 250 × 15/30 = 125.00) and the usage of
    # October 1st (5.00) are paid from it; the purchase itself is owed in full.
    assert prepaid.select("opening", "drawn", "closing").rows() == [
        (D("1000.00"), D("730.00"), D("270.00"))
    ]
    totals = dict(
        september.group_by("invoice_id").agg(pl.col("amount").sum()).sort("invoice_id").rows()
    )
    assert totals == {
        "INV-C-1-20260916-P": D("1000.00"),
        "INV-C-1-20260916-R": D("0.00"),
        "INV-C-1-20261001-U": D("0.00"),
    }


@settings(max_examples=12, deadline=None)
@given(
    changes=st.dictionaries(
        st.integers(min_value=1, max_value=90),  # day offset from September 1st
        st.integers(min_value=0, max_value=60),  # seats from that day
        max_size=4,
    ),
    cancel=st.one_of(st.none(), st.integers(min_value=2, max_value=90)),
)
def test_a_periods_fee_lines_sum_to_what_its_days_cost(
    tmp_path_factory: pytest.TempPathFactory, changes: dict[int, int], cancel: int | None
) -> None:
    root = tmp_path_factory.mktemp("fees")
    (root / "reference").mkdir()
    (root / "reference" / "customers.csv").write_text(
        "customer_id,name,entity_id,currency,country\nCUST-0001,Acme,US01,USD,US\n"
    )
    (root / "reference" / "meters.yaml").write_text(
        "meters:\n  - slug: api_calls\n    event_type: api.request\n    aggregation: COUNT\n"
    )
    start = date(2026, 9, 1)
    amendments: list[dict[str, Any]] = [
        {
            "effective_date": (start + timedelta(days=offset)).isoformat(),
            "type": "quantity_change",
            "charge_id": "seats-fee",
            "quantity": str(seats),
        }
        for offset, seats in sorted(changes.items())
        if cancel is None or offset < cancel
    ]
    if cancel is not None:
        amendments.append(
            {"effective_date": (start + timedelta(days=cancel)).isoformat(), "type": "cancellation"}
        )
    books = Books(root, [contract(start_date=start.isoformat(), amendments=amendments)])
    lines = pl.concat([books.close(p)[0] for p in ("2026-09", "2026-10", "2026-11", "2026-12")])
    seats_lines = lines.filter(pl.col("charge_id") == "seats-fee")

    def seats_on(day: date) -> int:
        if cancel is not None and day >= start + timedelta(days=cancel):
            return 0
        current = 10
        for offset, seats in sorted(changes.items()):
            if day >= start + timedelta(days=offset):
                current = seats
        return current

    for period in ("2026-09", "2026-10", "2026-11", "2026-12"):
        first, last = month(period)
        days = (last - first).days + 1
        exact = sum(D(seats_on(first + timedelta(days=n))) * D("25.00") / days for n in range(days))
        billed = seats_lines.filter(pl.col("service_start").dt.strftime("%Y-%m") == period)
        n = max(billed.height, 1)
        precise, amount = billed["amount_precise"].sum(), billed["amount"].sum()
        assert isinstance(precise, Decimal) and isinstance(amount, Decimal)
        assert abs(precise - exact) <= D("1e-12") * n * 2
        assert abs(amount - exact) <= D("0.005") * n
