"""Billable usage on hand-written events, through the real ingest: amounts to the cent."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml

from assets.ingest import ingest_landing_day
from assets.usage import daily_usage as daily_usage_asset
from rating.billing import billable_usage
from rating.ingest import connect, meters_table
from rating.terms import reference_tables, terms_in_force
from resources.reference import ReferenceData
from tests.conftest import LandFn, event

PRODUCTS = (
    "product_id,name,product_family,business_unit\n"
    "api,API,usage,core\nai,AI,usage,ai\nstorage,Storage,usage,core\nseats,Seats,seats,core\n"
)
PLAN = {
    "plan_id": "growth-usd",
    "currency": "USD",
    "recurring": [],
    "usage": [
        {
            "charge_id": "api-calls",
            "meter": "api_calls",
            "product_id": "api",
            "model": "graduated",
            "included_units": "31",
            "tiers": [
                {"up_to": "10", "unit_amount": "1", "flat_amount": "5"},
                {"up_to": None, "unit_amount": "0.5"},
            ],
        },
        {
            "charge_id": "users",
            "meter": "active_users",
            "product_id": "api",
            "model": "per_unit",
            "unit_amount": "2",
        },
        {
            "charge_id": "storage",
            "meter": "storage_gb",
            "product_id": "storage",
            "model": "per_unit",
            "unit_amount": "0.1",
            "minimum_amount": "3.10",
        },
        {
            "charge_id": "seats",
            "meter": "seats",
            "product_id": "seats",
            "model": "per_unit",
            "unit_amount": "10",
        },
        {
            "charge_id": "tokens",
            "meter": "tokens",
            "product_id": "ai",
            "model": "graduated",
            "group_by": ["model"],
            "tiers": [
                {"up_to": "100", "unit_amount": "0.01"},
                {"up_to": None, "unit_amount": "0.005"},
            ],
        },
    ],
}
CONTRACT = {
    "contract_id": "C-1",
    "customer_id": "CUST-0001",
    "plan_id": "growth-usd",
    "start_date": "2026-09-01",
    "end_date": None,
    "billing_alignment": "calendar",
    "amendments": [
        {
            "effective_date": "2026-09-16",
            "type": "price_override",
            "charge_id": "api-calls",
            "tiers": [
                {"up_to": "10", "unit_amount": "2", "flat_amount": "0"},
                {"up_to": None, "unit_amount": "1"},
            ],
        }
    ],
}


def day(d: int) -> date:
    return date(2026, 9, d)


def at(d: int, hour: int = 10) -> str:
    return f"2026-09-{d:02d}T{hour:02d}:00:00Z"


@pytest.fixture
def september(land: LandFn, resources: dict[str, object], data_dir: Path) -> pl.DataFrame:
    reference = data_dir / "reference"
    (reference / "products.csv").write_text(PRODUCTS)
    (reference / "plans.yaml").write_text(yaml.safe_dump({"plans": [PLAN]}))
    (reference / "contracts.yaml").write_text(yaml.safe_dump({"contracts": [CONTRACT]}))
    landings = {
        2: [event(f"a{i}", "api.request", time=at(2), data={"region": "eu"}) for i in range(20)]
        + [event("s1", "seats.snapshot", time=at(2), data={"seats": 5})],
        3: [event("u1", "user.active", time=at(3), data={"user_id": "u-1"})],
        4: [
            event("u2", "user.active", time=at(4), data={"user_id": "u-1"}),
            event("u3", "user.active", time=at(4), data={"user_id": "u-2"}),
        ],
        5: [
            event("g1", "storage.usage", time=at(5), data={"gb": 10}),
            event("t1", "llm.completion", time=at(5), data={"tokens": 150, "model": "small"}),
            event("t2", "llm.completion", time=at(5), data={"tokens": 50, "model": "large"}),
        ],
        6: [event("g2", "storage.usage", time=at(6), data={"gb": "12.5"})],
        10: [event("s2", "seats.snapshot", time=at(10), data={"seats": 7})],
        20: [event(f"b{i}", "api.request", time=at(20), data={"region": "us"}) for i in range(12)]
        + [event("u4", "user.active", time=at(20), data={"user_id": "u-1"})],
    }
    for d, lines in landings.items():
        land(day(d), "events-00.ndjson", lines)
        dg.materialize(
            [ingest_landing_day, daily_usage_asset],
            partition_key=day(d).isoformat(),
            resources=resources,
        )
    ref = ReferenceData(reference)
    plans = ref.plans()
    con = connect()
    terms_in_force(con, reference_tables(plans, ref.contracts(plans)), day(1), day(30))
    files = sorted((data_dir / "warehouse" / "usage_events").glob("*.parquet"))
    table = billable_usage(con, files, meters_table(ref.meters()), "2026-09", day(1), day(30))
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def line(
    frame: pl.DataFrame, start: int, charge: str, kind: str = "usage", group: str = "{}"
) -> dict[str, Any]:
    rows = frame.filter(
        (pl.col("segment_start") == day(start))
        & (pl.col("charge_id") == charge)
        & (pl.col("kind") == kind)
        & (pl.col("price_group") == group)
    )
    assert rows.height == 1, (start, charge, kind, group, rows)
    return rows.row(0, named=True)


def test_each_segment_priced_under_its_own_terms(september: pl.DataFrame) -> None:
    # 31 included calls a month, 15 of 30 days in each segment: 15.5 each.
    first = line(september, 1, "api-calls")
    assert (first["quantity"], first["included"], first["billable_quantity"]) == (
        Decimal(20),
        Decimal("15.5"),
        Decimal("4.5"),
    )
    assert first["amount"] == Decimal("9.50")  # 4.5 × 1 + flat 5 in the first tier
    second = line(september, 16, "api-calls")
    assert (second["quantity"], second["billable_quantity"], second["amount"]) == (
        Decimal(12),
        Decimal(0),
        Decimal(0),  # overridden tier 1 has no flat fee
    )


def test_non_additive_meters_are_exact_over_the_segment(september: pl.DataFrame) -> None:
    users = line(september, 1, "users")
    # u-1 on three days and u-2 once are two users; a sum of daily counts would say 4.
    assert users["quantity"] == Decimal(2)
    assert users["amount"] == Decimal("4.00")
    assert line(september, 1, "storage")["quantity"] == Decimal("12.5")  # MAX
    assert line(september, 1, "seats")["quantity"] == Decimal(7)  # LATEST by time
    assert line(september, 1, "seats")["amount"] == Decimal("70.00")


def test_groups_minimums_and_zero_usage(september: pl.DataFrame) -> None:
    assert line(september, 1, "tokens", group='{"model":"small"}')["amount"] == Decimal("1.25")
    assert line(september, 1, "tokens", group='{"model":"large"}')["amount"] == Decimal("0.50")
    # Storage: 1.25 billed against the 3.10 monthly minimum: one true-up for the month.
    assert line(september, 1, "storage", "minimum_true_up")["amount"] == Decimal("1.85")
    # Every charge has a row in every one of its segments, usage or not; only api-calls,
    # whose price changed on the 16th, has two.
    assert september.filter(pl.col("kind") == "usage").group_by("segment_start").len().sort(
        "segment_start"
    ).rows() == [(day(1), 6), (day(16), 1)]
    assert september["amount"].sum() == Decimal("88.35")


def test_breakdowns_add_up_to_the_precise_amount(september: pl.DataFrame) -> None:
    usage = september.filter(pl.col("kind") == "usage")
    sums = usage.select(
        pl.col("breakdown").list.eval(pl.element().struct.field("amount")).list.sum().alias("s"),
        "amount_precise",
    )
    assert (sums["s"] == sums["amount_precise"]).all()


def test_billable_usage_asset_writes_the_month_and_passes_its_checks(
    september: pl.DataFrame, resources: dict[str, object], data_dir: Path
) -> None:
    from assets.billing import billable_usage as billable_usage_asset

    result = dg.materialize([billable_usage_asset], partition_key="2026-09", resources=resources)
    assert all(c.passed for c in result.get_asset_check_evaluations())
    written = pl.read_parquet(data_dir / "warehouse" / "billable_usage" / "2026-09.parquet")
    assert written.drop("breakdown").equals(september.drop("breakdown"))


def test_billing_refuses_a_month_whose_landing_days_are_not_ingested(
    september: pl.DataFrame, land: LandFn, resources: dict[str, object]
) -> None:
    from assets.billing import billable_usage as billable_usage_asset

    land(day(25), "events-00.ndjson", [event("late", time=at(25))])
    with pytest.raises(
        Exception, match=r"landing days not ingested, or whose checks failed: 2026-09-25"
    ):
        dg.materialize([billable_usage_asset], partition_key="2026-09", resources=resources)


def rate(data_dir: Path, plans: list[object], contracts: list[object]) -> pl.DataFrame:
    """Reference files and already-accepted usage events → billable usage for September."""
    reference = data_dir / "reference"
    (reference / "products.csv").write_text(PRODUCTS)
    (reference / "plans.yaml").write_text(yaml.safe_dump({"plans": plans}))
    (reference / "contracts.yaml").write_text(yaml.safe_dump({"contracts": contracts}))
    ref = ReferenceData(reference)
    parsed = ref.plans()
    con = connect()
    terms_in_force(con, reference_tables(parsed, ref.contracts(parsed)), day(1), day(30))
    files = sorted((data_dir / "warehouse" / "usage_events").glob("*.parquet"))
    frame = pl.from_arrow(
        billable_usage(con, files, meters_table(ref.meters()), "2026-09", day(1), day(30))
    )
    assert isinstance(frame, pl.DataFrame)
    return frame


def test_a_month_with_nothing_landed_still_bills_minimums(data_dir: Path) -> None:
    frame = rate(data_dir, [PLAN], [{**CONTRACT, "amendments": []}])
    assert frame.filter(pl.col("kind") == "usage")["amount"].sum() == Decimal("5.00")  # tier-1 flat
    assert line(frame, 1, "storage", "minimum_true_up")["amount"] == Decimal("3.10")


def test_a_price_override_on_the_day_of_a_plan_change_applies_to_the_new_plan(
    data_dir: Path,
) -> None:
    other = {**PLAN, "plan_id": "scale-usd"}
    contract = {
        **CONTRACT,
        "amendments": [
            {
                "effective_date": "2026-09-16",
                "type": "price_override",
                "charge_id": "users",
                "unit_amount": "0.5",
            },
            {"effective_date": "2026-09-16", "type": "plan_change", "plan_id": "scale-usd"},
        ],
    }
    frame = rate(data_dir, [PLAN, other], [contract])
    late = frame.filter((pl.col("charge_id") == "users") & (pl.col("segment_start") == day(16)))
    assert late["plan_id"].to_list() == ["scale-usd"]
    (terms,) = late["breakdown"].to_list()
    assert terms[0]["unit_amount"] == Decimal("0.5")


def test_percentage_fees_per_price_group_take_only_that_groups_events(
    land: LandFn, resources: dict[str, object], data_dir: Path
) -> None:
    meters = data_dir / "reference" / "meters.yaml"
    meters.write_text(
        meters.read_text() + "  - slug: payment_volume\n    event_type: payment.captured\n"
        "    aggregation: SUM\n    value_property: $.amount\n    group_by: {region: $.region}\n"
    )
    land(
        day(3),
        "events-00.ndjson",
        [
            event("p1", "payment.captured", time=at(3), data={"amount": "100", "region": "eu"}),
            event("p2", "payment.captured", time=at(3), data={"amount": "200", "region": "us"}),
        ],
    )
    dg.materialize([ingest_landing_day], partition_key=day(3).isoformat(), resources=resources)
    fees = {
        "charge_id": "fees",
        "meter": "payment_volume",
        "product_id": "api",
        "model": "percentage",
        "rate": "10",
        "fixed_amount": "1",
        "group_by": ["region"],
    }
    frame = rate(data_dir, [{**PLAN, "usage": [fees]}], [{**CONTRACT, "amendments": []}])
    by_group = dict(frame.select("price_group", "amount").iter_rows())
    assert by_group == {'{"region":"eu"}': Decimal("11.00"), '{"region":"us"}': Decimal("21.00")}


def test_percentage_events_at_the_same_instant_are_free_in_event_id_order(
    land: LandFn, resources: dict[str, object], data_dir: Path
) -> None:
    meters = data_dir / "reference" / "meters.yaml"
    meters.write_text(
        meters.read_text() + "  - slug: payment_volume\n    event_type: payment.captured\n"
        "    aggregation: SUM\n    value_property: $.amount\n    group_by: {}\n"
    )
    # b and a at the same instant, listed b first; c later. By (time, source/id) a is the
    # first event and the free one: b pays 10% of 1, c 10% of 50. Were b free (it is the
    # smaller amount), a and c would pay 10 + 5.
    land(
        day(3),
        "events-00.ndjson",
        [
            event("p-b", "payment.captured", time=at(3), data={"amount": "1"}),
            event("p-a", "payment.captured", time=at(3), data={"amount": "100"}),
            event("p-c", "payment.captured", time=at(3, 11), data={"amount": "50"}),
        ],
    )
    dg.materialize([ingest_landing_day], partition_key=day(3).isoformat(), resources=resources)
    fees = {
        "charge_id": "fees",
        "meter": "payment_volume",
        "product_id": "api",
        "model": "percentage",
        "rate": "10",
        "free_events": "1",
    }
    frame = rate(data_dir, [{**PLAN, "usage": [fees]}], [{**CONTRACT, "amendments": []}])
    assert frame.select("amount", "event_count").rows() == [(Decimal("5.10"), 3)]


def test_billing_refuses_a_month_with_a_day_whose_checks_failed(
    september: pl.DataFrame, resources: dict[str, object], data_dir: Path
) -> None:
    import sqlalchemy as sa

    from assets.billing import billable_usage as billable_usage_asset
    from resources.control_db import ControlDb, ingest_day

    db = ControlDb(f"sqlite:///{data_dir / 'control.db'}")
    with db.engine.begin() as conn:
        conn.execute(
            sa.update(ingest_day)
            .where(ingest_day.c.received_date == day(5))
            .values(status="checks_failed")
        )
    db.dispose()
    with pytest.raises(
        Exception, match="landing days not ingested, or whose checks failed: 2026-09-05"
    ):
        dg.materialize([billable_usage_asset], partition_key="2026-09", resources=resources)


def test_rating_from_daily_usage_equals_rating_from_events(
    september: pl.DataFrame, data_dir: Path
) -> None:
    """daily_usage rows merge exactly: the month rated from them is the month from events."""
    ref = ReferenceData(data_dir / "reference")
    plans = ref.plans()
    con = connect()
    terms_in_force(con, reference_tables(plans, ref.contracts(plans)), day(1), day(30))
    warehouse = data_dir / "warehouse"
    from_days = billable_usage(
        con,
        sorted((warehouse / "usage_events").glob("*.parquet")),
        meters_table(ref.meters()),
        "2026-09",
        day(1),
        day(30),
        daily_usage_files=sorted((warehouse / "daily_usage").glob("*.parquet")),
    )
    frame = pl.from_arrow(from_days)
    assert isinstance(frame, pl.DataFrame)
    assert frame.equals(september)
