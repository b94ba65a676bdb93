"""Pricing models and half-even rounding to minor units, priced in batches on one DuckDB.

Worked examples from Lago's and Stripe's documentation are marked with their source; the
expected figures are written out in full. Every other expectation is worked by hand in
the comment next to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating.currency import MINOR_UNITS, install_rounding, minor_units, round_half_even
from rating.errors import ReferenceDataError
from rating.pricing import RESULT_SCHEMA, price

DEC = pa.decimal128(38, 12)
CON = duckdb.connect()
T0 = datetime(2026, 3, 1, tzinfo=UTC)
ITEM_DECIMALS = (
    "quantity",
    "unit_amount",
    "package_size",
    "package_amount",
    "free_units",
    "rate",
    "fixed_amount",
    "free_amount",
    "min_per_event",
    "max_per_event",
)
Tier = tuple[str | None, str | None, str | None]  # (up_to, unit_amount or rate, flat_amount)


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def items_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    columns: dict[str, pa.Array] = {
        "item_id": pa.array([r["item_id"] for r in rows], pa.string()),
        "model": pa.array([r["model"] for r in rows], pa.string()),
        "currency": pa.array([r.get("currency", "USD") for r in rows], pa.string()),
    }
    for name in ITEM_DECIMALS:
        default = "0" if name == "quantity" else None
        columns[name] = pa.array([_dec(r.get(name, default)) for r in rows], DEC)
    columns["free_events"] = pa.array([r.get("free_events") for r in rows], pa.int64())
    return pa.table(columns)


def tiers_table(plans: dict[str, Sequence[Tier]], rate_models: Sequence[str] = ()) -> pa.Table:
    """Tiers of each item; for items in ``rate_models`` the middle figure is the rate."""
    rows = [
        (item_id, no, tier)
        for item_id, tiers in plans.items()
        for no, tier in enumerate(tiers, start=1)
    ]
    is_rate = [item_id in rate_models for item_id, _, _ in rows]
    return pa.table(
        {
            "item_id": pa.array([r[0] for r in rows], pa.string()),
            "tier_no": pa.array([r[1] for r in rows], pa.int32()),
            "up_to": pa.array([_dec(r[2][0]) for r in rows], DEC),
            "unit_amount": pa.array(
                [None if rate else _dec(r[2][1]) for r, rate in zip(rows, is_rate, strict=True)],
                DEC,
            ),
            "flat_amount": pa.array([_dec(r[2][2]) for r in rows], DEC),
            "rate": pa.array(
                [_dec(r[2][1]) if rate else None for r, rate in zip(rows, is_rate, strict=True)],
                DEC,
            ),
        }
    )


def events_table(events: Mapping[str, Sequence[tuple[int, str, str]]]) -> pa.Table:
    """Events per item as (minutes after T0, event_order, amount)."""
    rows = [(item_id, *e) for item_id, evs in events.items() for e in evs]
    return pa.table(
        {
            "item_id": pa.array([r[0] for r in rows], pa.string()),
            "event_time": pa.array(
                [T0 + timedelta(minutes=r[1]) for r in rows], pa.timestamp("us", tz="UTC")
            ),
            "event_order": pa.array([r[2] for r in rows], pa.string()),
            "amount": pa.array([Decimal(r[3]) for r in rows], DEC),
        }
    )


def priced(
    items: pa.Table, tiers: pa.Table | None = None, events: pa.Table | None = None
) -> dict[str, dict[str, Any]]:
    result = price(items, tiers, events, con=CON)
    assert result.schema == RESULT_SCHEMA
    ids = result.column("item_id").to_pylist()
    assert ids == sorted(ids)
    return {row["item_id"]: row for row in result.to_pylist()}


def assert_breakdown_adds_up(row: dict[str, Any]) -> None:
    assert sum((b["amount"] for b in row["breakdown"]), Decimal(0)) == row["amount_precise"]


# ---------------------------------------------------------------- table-driven cases

# design.md's example plan: 0-10 at 1 plus a flat 5, then 0.5 a unit, open.
DESIGN: list[Tier] = [("10", "1", "5"), (None, "0.5", None)]
# Lago docs, graduated: $1 a unit for the first 100, $0.50 for the next 100, $0.10 after.
LAGO_GRADUATED: list[Tier] = [("100", "1", None), ("200", "0.5", None), (None, "0.1", None)]
# Stripe docs, tiered pricing (Typographic): 1-5 fonts 7 USD, 6-10 6.5 USD, 11+ 6 USD.
STRIPE: list[Tier] = [("5", "7", None), ("10", "6.5", None), (None, "6", None)]
# Lago docs, volume: 0.0010 / 0.0008 / 0.0006 / 0.0004 a call, each tier with a $10 fee.
LAGO_VOLUME: list[Tier] = [
    ("10000", "0.001", "10"),
    ("50000", "0.0008", "10"),
    ("100000", "0.0006", "10"),
    (None, "0.0004", "10"),
]
# Lago docs, graduated percentage: 0-1,000 at 1% + $200, to 10,000 at 2% + $300, then 3% + $400.
LAGO_GRADUATED_PCT: list[Tier] = [("1000", "1", "200"), ("10000", "2", "300"), (None, "3", "400")]
# A JPY plan: 150 yen a unit up to 100, then 1.5 yen.
JPY_TIERS: list[Tier] = [("100", "150", None), (None, "1.5", None)]


@dataclass(frozen=True)
class Case:
    id: str
    model: str
    quantity: str
    precise: str
    amount: str
    currency: str = "USD"
    tiers: Sequence[Tier] = ()
    params: dict[str, Any] = field(default_factory=dict)
    breakdown_tiers: tuple[int, ...] | None = None  # the tier_no of each breakdown row


CASES = [
    # per_unit
    Case("lago-standard", "per_unit", "1000", "50", "50.00", params={"unit_amount": "0.05"}),
    Case("per-unit-zero", "per_unit", "0", "0", "0", params={"unit_amount": "0.05"}),
    Case("per-unit-fraction", "per_unit", "2.5", "0.075", "0.08", params={"unit_amount": "0.03"}),
    Case("usd-tie-down", "per_unit", "1", "0.125", "0.12", params={"unit_amount": "0.125"}),
    Case("usd-tie-up", "per_unit", "1", "0.135", "0.14", params={"unit_amount": "0.135"}),
    Case("usd-fraction-tie", "per_unit", "0.5", "0.085", "0.08", params={"unit_amount": "0.17"}),
    Case("jpy-tie-down", "per_unit", "2.5", "2.5", "2", "JPY", params={"unit_amount": "1"}),
    Case("jpy-tie-up", "per_unit", "3.5", "3.5", "4", "JPY", params={"unit_amount": "1"}),
    Case(
        "kwd-tie-down", "per_unit", "1", "0.0125", "0.012", "KWD", params={"unit_amount": "0.0125"}
    ),
    Case("kwd-tie-up", "per_unit", "1", "0.0135", "0.014", "KWD", params={"unit_amount": "0.0135"}),
    # 0.000001 × 0.0000025 = 0.0000000000025 has 13 decimals: rounded half-even at the 12th.
    Case(
        "product-beyond-12dp",
        "per_unit",
        "0.000001",
        "0.000000000002",
        "0",
        params={"unit_amount": "0.0000025"},
    ),
    # graduated, design.md's plan: 0 reaches tier 1 and pays its flat 5 (Lago).
    Case("design-zero", "graduated", "0", "5", "5.00", tiers=DESIGN, breakdown_tiers=(1,)),
    Case("design-half", "graduated", "0.5", "5.5", "5.50", tiers=DESIGN),  # 0.5×1 + 5
    Case("design-on-up-to", "graduated", "10", "15", "15.00", tiers=DESIGN, breakdown_tiers=(1,)),
    # 1e-12 units into tier 2 at 0.5: 5e-13 rounds half-even to 0 at the 12th decimal.
    Case(
        "design-just-above",
        "graduated",
        "10.000000000001",
        "15",
        "15.00",
        tiers=DESIGN,
        breakdown_tiers=(1, 2),
    ),
    Case("design-open-tier", "graduated", "12.5", "16.25", "16.25", tiers=DESIGN),  # 15 + 2.5×0.5
    # Lago docs' graduated tiers: 250 units = 100×1 + 100×0.5 + 50×0.1 = 155.
    Case(
        "lago-graduated",
        "graduated",
        "250",
        "155",
        "155.00",
        tiers=LAGO_GRADUATED,
        breakdown_tiers=(1, 2, 3),
    ),
    Case(
        "lago-graduated-200",
        "graduated",
        "200",
        "150",
        "150.00",
        tiers=LAGO_GRADUATED,
        breakdown_tiers=(1, 2),
    ),
    # Stripe docs' tiers, graduated: 6 fonts = 5×7 + 1×6.5 = 41.50; 11 = 35 + 32.5 + 6 = 73.50.
    Case("stripe-graduated-5", "graduated", "5", "35", "35.00", tiers=STRIPE),
    Case("stripe-graduated-6", "graduated", "6", "41.5", "41.50", tiers=STRIPE),
    Case("stripe-graduated-11", "graduated", "11", "73.5", "73.50", tiers=STRIPE),
    # JPY: 100×150 + 0.5×1.5 = 15000.75 → 15001; 100×150 + 1×1.5 = 15001.5 → 15002 (tie, even).
    Case("jpy-graduated", "graduated", "100.5", "15000.75", "15001", "JPY", tiers=JPY_TIERS),
    Case("jpy-graduated-tie", "graduated", "101", "15001.5", "15002", "JPY", tiers=JPY_TIERS),
    # Only an open tier.
    Case("open-only", "graduated", "3.5", "8", "8.00", tiers=[(None, "2", "1")]),
    # volume, Stripe docs: 5 fonts = 5 × 7 = 35 USD; 6 fonts = 6 × 6.5 = 39 USD.
    Case("stripe-volume-5", "volume", "5", "35", "35.00", tiers=STRIPE, breakdown_tiers=(1,)),
    Case("stripe-volume-6", "volume", "6", "39", "39.00", tiers=STRIPE, breakdown_tiers=(2,)),
    Case("stripe-volume-11", "volume", "11", "66", "66.00", tiers=STRIPE, breakdown_tiers=(3,)),
    # Lago docs, volume: 65,000 calls = 65,000 × 0.0006 + 10 = 49.
    Case("lago-volume", "volume", "65000", "49", "49.00", tiers=LAGO_VOLUME, breakdown_tiers=(3,)),
    Case("volume-zero", "volume", "0", "10", "10.00", tiers=LAGO_VOLUME, breakdown_tiers=(1,)),
    Case(
        "volume-on-up-to", "volume", "10000", "20", "20.00", tiers=LAGO_VOLUME, breakdown_tiers=(1,)
    ),
    # 10000.000000000001 × 0.0008 = 8.0000000000000008 → 8 at 12 decimals, + 10 flat.
    Case(
        "volume-just-above",
        "volume",
        "10000.000000000001",
        "18",
        "18.00",
        tiers=LAGO_VOLUME,
        breakdown_tiers=(2,),
    ),
    Case(
        "volume-open",
        "volume",
        "250000.5",
        "110.0002",
        "110.00",
        tiers=LAGO_VOLUME,
        breakdown_tiers=(4,),
    ),
    # Volume in KWD: 3 × 0.0125 = 0.0375 → 0.038 (7 odd, tie goes up to 8).
    Case(
        "kwd-volume",
        "volume",
        "3",
        "0.0375",
        "0.038",
        "KWD",
        tiers=[("10", "0.0125", None), (None, "0.01", None)],
    ),
    # package, Lago docs: $5 per 100 units, first 100 free; 201 units = 0 + 5 + 5 = $10.
    Case(
        "lago-package",
        "package",
        "201",
        "10",
        "10.00",
        params={"package_size": "100", "package_amount": "5", "free_units": "100"},
    ),
    Case(
        "package-zero",
        "package",
        "0",
        "0",
        "0.00",
        params={"package_size": "100", "package_amount": "5", "free_units": "100"},
    ),
    Case(
        "package-within-free",
        "package",
        "100",
        "0",
        "0.00",
        params={"package_size": "100", "package_amount": "5", "free_units": "100"},
    ),
    Case(
        "package-on-boundary",
        "package",
        "300",
        "10",
        "10.00",
        params={"package_size": "100", "package_amount": "5", "free_units": "100"},
    ),
    Case(
        "package-just-above",
        "package",
        "300.000000000001",
        "15",
        "15.00",
        params={"package_size": "100", "package_amount": "5", "free_units": "100"},
    ),
    # Fractional package size: 1.3 GB in 0.25 GB packages = 6 packages × 0.7 = 4.2 (no free).
    Case(
        "package-fractional",
        "package",
        "1.3",
        "4.2",
        "4.20",
        params={"package_size": "0.25", "package_amount": "0.7"},
    ),
    Case(
        "package-jpy",
        "package",
        "1001",
        "1000",
        "1000",
        "JPY",
        params={"package_size": "1000", "package_amount": "500"},
    ),
    # graduated_percentage, Lago docs' tiers over a summed amount.
    # 0 reaches tier 1: its $200 flat fee.
    Case("lago-gp-zero", "graduated_percentage", "0", "200", "200.00", tiers=LAGO_GRADUATED_PCT),
    # Lago's first transaction: 500 × 1% + 200 = 205.
    Case("lago-gp-500", "graduated_percentage", "500", "205", "205.00", tiers=LAGO_GRADUATED_PCT),
    # Lago's first two transactions together (205 + 306): 1000×1% + 200 + 50×2% + 300 = 511.
    Case("lago-gp-1050", "graduated_percentage", "1050", "511", "511.00", tiers=LAGO_GRADUATED_PCT),
    # All three of Lago's transactions (205 + 306 + 80): 210 + 4050×2% + 300 = 591.
    Case(
        "lago-gp-5050",
        "graduated_percentage",
        "5050",
        "591",
        "591.00",
        tiers=LAGO_GRADUATED_PCT,
        breakdown_tiers=(1, 2),
    ),
    # 12,000: 210 + 180 + 300 + 2,000×3% + 400 = 1,150.
    Case(
        "lago-gp-12000",
        "graduated_percentage",
        "12000",
        "1150",
        "1150.00",
        tiers=LAGO_GRADUATED_PCT,
        breakdown_tiers=(1, 2, 3),
    ),
    # 0.125 × 10% = 0.0125 → 0.01 USD; the rate's division by 100 is exact here.
    Case("gp-small", "graduated_percentage", "0.125", "0.0125", "0.01", tiers=[(None, "10", None)]),
]


@pytest.fixture(scope="module")
def case_results() -> dict[str, dict[str, Any]]:
    rows = [
        {
            "item_id": c.id,
            "model": c.model,
            "currency": c.currency,
            "quantity": c.quantity,
            **c.params,
        }
        for c in CASES
    ]
    plans = {c.id: c.tiers for c in CASES if c.tiers}
    rate_models = [c.id for c in CASES if c.model == "graduated_percentage"]
    return priced(items_table(rows), tiers_table(plans, rate_models))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_models(case: Case, case_results: dict[str, dict[str, Any]]) -> None:
    row = case_results[case.id]
    assert row["amount_precise"] == Decimal(case.precise)
    assert row["amount"] == Decimal(case.amount)
    # The rounded amount keeps exactly the currency's decimals.
    assert row["amount"] == row["amount"].quantize(Decimal(1).scaleb(-minor_units(case.currency)))
    assert_breakdown_adds_up(row)
    if case.breakdown_tiers is not None:
        assert tuple(b["tier_no"] for b in row["breakdown"]) == case.breakdown_tiers


def test_breakdowns_describe_the_computation(case_results: dict[str, dict[str, Any]]) -> None:
    (package,) = case_results["lago-package"]["breakdown"]
    assert (package["units"], package["unit_amount"], package["amount"]) == (2, 5, 10)
    lago = case_results["lago-graduated"]["breakdown"]
    assert [(b["units"], b["unit_amount"], b["amount"]) for b in lago] == [
        (100, 1, 100),
        (100, Decimal("0.5"), 50),
        (50, Decimal("0.1"), 5),
    ]
    (zero,) = case_results["design-zero"]["breakdown"]
    assert (zero["units"], zero["flat_amount"], zero["amount"]) == (0, 5, 5)
    gp = case_results["lago-gp-5050"]["breakdown"]
    assert [(b["units"], b["unit_amount"], b["flat_amount"], b["amount"]) for b in gp] == [
        (1000, 1, 200, 210),
        (4050, 2, 300, 381),
    ]


# ---------------------------------------------------------------- percentage

PERCENTAGE_PLANS: dict[str, dict[str, Any]] = {
    # Lago docs: 1.2% + $0.10, the first 3 events or first $500 free. Events 200, 100, 100
    # are free; the 4th ($50) is past the 3 free events: 0.10 + 1.2% × 50 = $0.70.
    "lago-doc": {"rate": "1.2", "fixed_amount": "0.10", "free_events": 3, "free_amount": "500"},
    # First 2 events free; 30 and 40 pay 2% + 0.30: 0.90 + 1.10 = 2.00.
    "free-events": {"rate": "2", "fixed_amount": "0.30", "free_events": 2},
    # First 25 free: events of 10, 10 free; the 3rd crosses (5 above): 0.5 + 1; the 4th
    # pays in full: 1 + 1. Total 3.50.
    "free-amount-crossing": {"rate": "10", "fixed_amount": "1", "free_amount": "25"},
    # 5 free events or 15 free: the amount runs out first, in the 2nd event (5 above):
    # 0.5 + 1; the 3rd pays 1 + 1. Total 3.50.
    "both-amount-first": {"rate": "10", "fixed_amount": "1", "free_events": 5, "free_amount": "15"},
    # 1 free event or 100 free: the count runs out first; the 2nd pays in full: 1 + 1 = 2.
    "both-count-first": {"rate": "10", "fixed_amount": "1", "free_events": 1, "free_amount": "100"},
    # 1% + 0.10 clamped to [0.50, 2]: 10 → 0.20 → 0.50; 100 → 1.10; 1000 → 10.10 → 2;
    # 0 → 0.10 → 0.50 (the fixed fee is inside the clamp). Total 4.10.
    "clamps": {"rate": "1", "fixed_amount": "0.10", "min_per_event": "0.50", "max_per_event": "2"},
    # 25 free, minimum 3: the 1st (20) is wholly free and pays nothing despite the minimum;
    # the 2nd crosses (5 above): 10% × 5 = 0.50 → 3. Total 3.
    "crossing-clamped": {"rate": "10", "free_amount": "25", "min_per_event": "3"},
    # 2 free events, fixed 1, minimum 5: two events pay nothing, the 3rd 0.01 + 1 → 5.
    "free-with-minimum": {"rate": "1", "fixed_amount": "1", "free_events": 2, "min_per_event": "5"},
    # 20 free: 10 and 10 are wholly free (the 2nd ends exactly on it); 5 pays 0.5 + 1.
    "exactly-on-free-amount": {"rate": "10", "fixed_amount": "1", "free_amount": "20"},
    # Free by (event_time, event_order), not by table order: the first event is a, at
    # minute 0 (1), free; b (100, same minute) pays 10; c (minute -5, listed last) is first.
    "ordering": {"rate": "10", "free_events": 1},
    # free_events 0 means none: only the 10 free amount applies; 5 free, 10 crosses (5 above).
    "zero-free-events": {"rate": "10", "free_events": 0, "free_amount": "10"},
    "no-events": {"rate": "10", "fixed_amount": "1"},
    # JPY: 10% of 25 = 2.5 + 10% of 10 = 1 → 3.5 yen → 4 (tie to even).
    "jpy": {"rate": "10", "currency": "JPY"},
    # KWD: 1% of 1.25 = 0.0125 → 0.012 (tie to even).
    "kwd": {"rate": "1", "currency": "KWD"},
    # 2.9% + 0.30 (Stripe's card fee, as in Lago's template) on 12.34: 0.35786 + 0.30.
    "card-fee": {"rate": "2.9", "fixed_amount": "0.30"},
    # amount × rate is rounded half-even at its 10th decimal (then / 100): 5e-11 → 0,
    # 1.5e-10 → 2e-10, 2.5e-10 → 2e-10; 4e-10 in all, 4e-12 after / 100.
    "tie-at-the-rounding": {"rate": "5"},
    # The same ties below zero round the same way: -4e-12.
    "negative-tie": {"rate": "-5"},
    # A rate of 9 decimals: 10 × 1.000000001 = 10.00000001 (exact), / 100.
    "nine-decimal-rate": {"rate": "1.000000001"},
}
PERCENTAGE_EVENTS: dict[str, list[tuple[int, str, str]]] = {
    "lago-doc": [(0, "1", "200"), (1, "2", "100"), (2, "3", "100"), (3, "4", "50")],
    "free-events": [(0, "1", "10"), (1, "2", "20"), (2, "3", "30"), (3, "4", "40")],
    "free-amount-crossing": [(0, "1", "10"), (1, "2", "10"), (2, "3", "10"), (3, "4", "10")],
    "both-amount-first": [(0, "1", "10"), (1, "2", "10"), (2, "3", "10")],
    "both-count-first": [(0, "1", "10"), (1, "2", "10")],
    "clamps": [(0, "1", "10"), (1, "2", "100"), (2, "3", "1000"), (3, "4", "0")],
    "crossing-clamped": [(0, "1", "20"), (1, "2", "10")],
    "free-with-minimum": [(0, "1", "1"), (1, "2", "1"), (2, "3", "1")],
    "exactly-on-free-amount": [(0, "1", "10"), (1, "2", "10"), (2, "3", "5")],
    "ordering": [(0, "b", "100"), (0, "a", "1"), (-5, "c", "1000")],
    "zero-free-events": [(0, "1", "5"), (1, "2", "10")],
    "jpy": [(0, "1", "25"), (1, "2", "10")],
    "kwd": [(0, "1", "1.25")],
    "card-fee": [(0, "1", "12.34")],
    "tie-at-the-rounding": [
        (0, "1", "0.00000000001"),
        (1, "2", "0.00000000003"),
        (2, "3", "0.00000000005"),
    ],
    "negative-tie": [
        (0, "1", "0.00000000001"),
        (1, "2", "0.00000000003"),
        (2, "3", "0.00000000005"),
    ],
    "nine-decimal-rate": [(0, "1", "10")],
}
# item → (amount_precise, amount, paid events)
PERCENTAGE_EXPECTED: dict[str, tuple[str, str, int]] = {
    "lago-doc": ("0.70", "0.70", 1),
    "free-events": ("2.00", "2.00", 2),
    "free-amount-crossing": ("3.50", "3.50", 2),
    "both-amount-first": ("3.50", "3.50", 2),
    "both-count-first": ("2", "2.00", 1),
    "clamps": ("4.10", "4.10", 4),
    "crossing-clamped": ("3", "3.00", 1),
    "free-with-minimum": ("5", "5.00", 1),
    "exactly-on-free-amount": ("1.5", "1.50", 1),
    # c (1000, earliest) is free; a pays 0.1, b pays 10.
    "ordering": ("10.1", "10.10", 2),
    "zero-free-events": ("0.5", "0.50", 1),
    "no-events": ("0", "0.00", 0),
    "jpy": ("3.5", "4", 2),
    "kwd": ("0.0125", "0.012", 1),
    "card-fee": ("0.65786", "0.66", 1),
    "tie-at-the-rounding": ("0.000000000004", "0.00", 3),
    "negative-tie": ("-0.000000000004", "0.00", 3),
    "nine-decimal-rate": ("0.1000000001", "0.10", 1),
}


@pytest.fixture(scope="module")
def percentage_results() -> dict[str, dict[str, Any]]:
    rows = [
        {"item_id": item_id, "model": "percentage", "quantity": None, **plan}
        for item_id, plan in PERCENTAGE_PLANS.items()
    ]
    return priced(items_table(rows), None, events_table(PERCENTAGE_EVENTS))


@pytest.mark.parametrize("item_id", sorted(PERCENTAGE_EXPECTED))
def test_percentage(item_id: str, percentage_results: dict[str, dict[str, Any]]) -> None:
    precise, amount, paid = PERCENTAGE_EXPECTED[item_id]
    row = percentage_results[item_id]
    assert row["amount_precise"] == Decimal(precise)
    assert row["amount"] == Decimal(amount)
    (breakdown,) = row["breakdown"]
    assert breakdown["units"] == paid
    assert breakdown["amount"] == row["amount_precise"]


# ---------------------------------------------------------------- currency and rounding


def test_minor_units() -> None:
    expected = {
        "USD": 2,
        "EUR": 2,
        "GBP": 2,
        "JPY": 0,
        "CHF": 2,
        "CAD": 2,
        "AUD": 2,
        "SEK": 2,
        "NOK": 2,
        "DKK": 2,
        "KWD": 3,
        "BHD": 3,
        "JOD": 3,
        "OMR": 3,
        "TND": 3,
        "KRW": 0,
        "CLP": 0,
        "ISK": 0,
        "VND": 0,
        "CLF": 4,
    }
    assert {code: minor_units(code) for code in expected} == expected
    with pytest.raises(ValueError, match="'XYZ'"):
        minor_units("XYZ")
    with pytest.raises(ValueError, match="upper case"):
        minor_units("usd")


def test_duckdb_round_is_half_away_from_zero() -> None:
    """Why mc_round_half_even exists: DuckDB rounds decimal ties away from zero."""
    (row,) = CON.sql(
        "SELECT round(CAST(0.125 AS DECIMAL(38,12)), 2), round(CAST(2.5 AS DECIMAL(38,12)), 0)"
    ).fetchall()
    assert row == (Decimal("0.13"), Decimal("3"))


def test_unknown_currency_is_named() -> None:
    items = items_table(
        [
            {
                "item_id": "a",
                "model": "per_unit",
                "currency": "XYZ",
                "quantity": "1",
                "unit_amount": "1",
            }
        ]
    )
    with pytest.raises(ReferenceDataError, match="currency = 'XYZ'"):
        price(items, con=CON)


@pytest.mark.parametrize(
    ("row", "tiers", "message"),
    [
        ({"model": "flat"}, None, "model = 'flat'"),
        ({"model": "per_unit", "quantity": "-1", "unit_amount": "1"}, None, "quantity"),
        ({"model": "package", "package_size": "0", "package_amount": "1"}, None, "package_size"),
        ({"model": "graduated"}, None, "at least one tier"),
        (
            {"model": "graduated"},
            [("10", "1", None), ("5", "1", None), (None, "1", None)],
            "tier 2 up_to",
        ),
        ({"model": "volume"}, [("10", "1", None), ("20", "1", None)], "last tier is open"),
        (
            {"model": "percentage", "min_per_event": "2", "max_per_event": "1", "rate": "1"},
            None,
            "max_per_event",
        ),
    ],
)
def test_bad_plans_are_refused(row: dict[str, Any], tiers: list[Tier] | None, message: str) -> None:
    items = items_table([{"item_id": "a", **row}])
    tier_table = tiers_table({"a": tiers}) if tiers else None
    with pytest.raises(ReferenceDataError, match=message):
        price(items, tier_table, con=CON)


def test_float_columns_are_refused() -> None:
    items = items_table([{"item_id": "a", "model": "per_unit", "unit_amount": "1"}])
    items = items.set_column(3, "quantity", pa.array([0.1], pa.float64()))
    with pytest.raises(ReferenceDataError, match="quantity = 'DOUBLE'"):
        price(items, con=CON)


# ---------------------------------------------------------------- properties

# Six decimals at most in quantities and prices: every product has ≤ 12 decimals, so the
# SQL must match exact Decimal arithmetic digit for digit.
amounts = st.decimals(min_value=0, max_value=1000, places=6)
quantities = st.lists(st.decimals(min_value=0, max_value=5000, places=6), min_size=1, max_size=25)


@st.composite
def tier_plans(draw: st.DrawFn) -> list[tuple[Decimal | None, Decimal, Decimal]]:
    bounds = sorted(
        draw(
            st.sets(st.decimals(min_value="0.5", max_value=4000, places=3), min_size=0, max_size=4)
        )
    )
    ups: list[Decimal | None] = [*bounds, None]
    return [(up, draw(amounts), draw(st.sampled_from([Decimal(0), draw(amounts)]))) for up in ups]


def graduated_oracle(q: Decimal, plan: list[tuple[Decimal | None, Decimal, Decimal]]) -> Decimal:
    total, lower = Decimal(0), Decimal(0)
    for k, (up, unit, flat) in enumerate(plan):
        if k > 0 and q <= lower:
            break
        total += (min(q, up if up is not None else q) - lower) * unit + flat
        lower = up if up is not None else lower
    return total


def plan_tables(
    model: str, qs: list[Decimal], plan: list[tuple[Decimal | None, Decimal, Decimal]]
) -> tuple[pa.Table, pa.Table]:
    ids = [f"q{i:03d}" for i in range(len(qs))]
    items = items_table(
        [{"item_id": i, "model": model, "quantity": q} for i, q in zip(ids, qs, strict=True)]
    )
    tiers = tiers_table({i: [(_s(u), str(a), str(f)) for u, a, f in plan] for i in ids})
    return items, tiers


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


@settings(max_examples=15, deadline=None)
@given(plan=tier_plans(), qs=quantities)
def test_graduated_properties(
    plan: list[tuple[Decimal | None, Decimal, Decimal]], qs: list[Decimal]
) -> None:
    rows = priced(*plan_tables("graduated", qs, plan))
    by_quantity = sorted(zip(qs, rows.values(), strict=True), key=lambda pair: pair[0])
    for q, row in by_quantity:
        assert row["amount_precise"] == graduated_oracle(q, plan)
        assert_breakdown_adds_up(row)
    precise = [row["amount_precise"] for _, row in by_quantity]
    assert precise == sorted(precise)  # non-decreasing in quantity


@settings(max_examples=15, deadline=None)
@given(plan=tier_plans(), qs=quantities)
def test_volume_picks_exactly_one_tier(
    plan: list[tuple[Decimal | None, Decimal, Decimal]], qs: list[Decimal]
) -> None:
    rows = priced(*plan_tables("volume", qs, plan))
    for q, row in zip(qs, rows.values(), strict=True):
        (tier,) = row["breakdown"]
        up, unit, flat = plan[tier["tier_no"] - 1]
        lower = plan[tier["tier_no"] - 2][0] if tier["tier_no"] > 1 else None
        assert lower is None or q > lower
        assert up is None or q <= up
        assert row["amount_precise"] == q * unit + flat == tier["amount"]


@settings(max_examples=15, deadline=None)
@given(
    qs=quantities,
    size=st.decimals(min_value="0.001", max_value=500, places=3),
    package_amount=amounts,
    free=st.decimals(min_value=0, max_value=1000, places=2),
)
def test_package_amounts_are_whole_packages(
    qs: list[Decimal], size: Decimal, package_amount: Decimal, free: Decimal
) -> None:
    ids = [f"q{i:03d}" for i in range(len(qs))]
    params = {"package_size": size, "package_amount": package_amount, "free_units": free}
    rows = priced(
        items_table(
            [
                {"item_id": i, "model": "package", "quantity": q, **params}
                for i, q in zip(ids, qs, strict=True)
            ]
        )
    )
    for q, row in zip(qs, rows.values(), strict=True):
        packages = math.ceil(max(q - free, Decimal(0)) / size)
        assert row["amount_precise"] == packages * package_amount
        assert row["breakdown"][0]["units"] == packages
        if package_amount:
            assert row["amount_precise"] % package_amount == 0


def percentage_oracle(plan: dict[str, Any], amounts: list[Decimal]) -> Decimal:
    """The percentage rules, one event at a time (events already in order)."""
    rate, fixed = Decimal(plan["rate"]), Decimal(plan.get("fixed_amount") or 0)
    free_events = plan.get("free_events") or None
    free_amount = Decimal(plan.get("free_amount") or 0) or None
    low, high = _dec(plan.get("min_per_event")), _dec(plan.get("max_per_event"))
    total, before = Decimal(0), Decimal(0)
    for n, amount in enumerate(amounts, start=1):
        inside = (free_events is not None or free_amount is not None) and (
            (free_events is None or n <= free_events)
            and (free_amount is None or before < free_amount)
        )
        chargeable = amount
        if inside:
            chargeable = (
                Decimal(0)
                if free_amount is None
                else max(before + amount - free_amount, Decimal(0))
            )
        before += amount
        if inside and chargeable == 0:
            continue
        fee = (chargeable * rate / 100).quantize(Decimal("1e-12"), ROUND_HALF_EVEN) + fixed
        fee = max(fee, low) if low is not None else fee
        total += min(fee, high) if high is not None else fee
    return total


@settings(max_examples=15, deadline=None)
@given(
    plans=st.lists(
        st.fixed_dictionaries(
            {
                "rate": st.decimals(min_value=0, max_value=10, places=3),
                "fixed_amount": st.none() | st.decimals(min_value=0, max_value=1, places=2),
                "free_events": st.none() | st.integers(min_value=0, max_value=4),
                "free_amount": st.none() | st.decimals(min_value=0, max_value=300, places=2),
                "min_per_event": st.none() | st.decimals(min_value=0, max_value=2, places=2),
                "max_per_event": st.none() | st.decimals(min_value=2, max_value=9, places=2),
            }
        ),
        min_size=1,
        max_size=8,
    ),
    amounts=st.lists(
        st.lists(st.decimals(min_value=0, max_value=200, places=2), max_size=10),
        min_size=8,
        max_size=8,
    ),
)
def test_percentage_matches_the_rules(
    plans: list[dict[str, Any]], amounts: list[list[Decimal]]
) -> None:
    ids = [f"p{i}" for i in range(len(plans))]
    amounts = amounts[: len(plans)]  # one list of events per plan
    items = items_table(
        [{"item_id": i, "model": "percentage", **p} for i, p in zip(ids, plans, strict=True)]
    )
    events = events_table(
        {
            i: [(n, "x", str(a)) for n, a in enumerate(evs)]
            for i, evs in zip(ids, amounts, strict=True)
        }
    )
    rows = priced(items, None, events)
    for i, plan, evs in zip(ids, plans, amounts, strict=True):
        assert rows[i]["amount_precise"] == percentage_oracle(plan, evs)
        assert_breakdown_adds_up(rows[i])


@settings(max_examples=15, deadline=None)
@given(
    plans=st.lists(
        st.fixed_dictionaries(
            {
                "rate": st.decimals(min_value=0, max_value=10, places=3),
                "fixed_amount": st.none() | st.decimals(min_value=0, max_value=1, places=2),
                "free_events": st.none() | st.integers(min_value=0, max_value=6),
                "free_amount": st.none() | st.decimals(min_value=0, max_value=300, places=2),
                "max_per_event": st.none() | st.decimals(min_value=2, max_value=9, places=2),
            }
        ),
        min_size=1,
        max_size=6,
    ),
    events=st.lists(
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=3),
                st.decimals(min_value=0, max_value=200, places=2),
            ),
            max_size=12,
        ),
        min_size=6,
        max_size=6,
    ),
)
def test_percentage_order_settles_ties_in_time(
    plans: list[dict[str, Any]], events: list[list[tuple[int, Decimal]]]
) -> None:
    """Events at the same minute are free by event_order, wherever the allowance ends."""
    ids = [f"t{i}" for i in range(len(plans))]
    # Orders that sort against the table order: the last event listed comes first.
    timed = {
        i: [(minute, f"o{99 - n:02d}", str(a)) for n, (minute, a) in enumerate(evs)]
        for i, evs in zip(ids, events, strict=False)
    }
    items = items_table(
        [{"item_id": i, "model": "percentage", **p} for i, p in zip(ids, plans, strict=True)]
    )
    rows = priced(items, None, events_table(timed))
    for i, plan in zip(ids, plans, strict=True):
        in_order = sorted(timed[i], key=lambda e: (e[0], e[1], Decimal(e[2])))
        assert rows[i]["amount_precise"] == percentage_oracle(
            plan, [Decimal(a) for _, _, a in in_order]
        )


@settings(max_examples=25, deadline=None)
@given(
    rates=st.lists(
        st.integers(min_value=0, max_value=12).flatmap(
            lambda places: st.decimals(min_value=-50, max_value=50, places=places)
        ),
        min_size=1,
        max_size=6,
    ),
    amounts=st.lists(
        st.integers(min_value=0, max_value=12).flatmap(
            lambda places: st.decimals(min_value=0, max_value=10**6, places=places)
        )
        | st.sampled_from([Decimal("0.00000000001"), Decimal("0.00000000003")]),
        min_size=1,
        max_size=12,
    ),
)
def test_percentage_fees_are_exact_at_any_scale(
    rates: list[Decimal], amounts: list[Decimal]
) -> None:
    """Amounts and rates of any scale up to 12 decimals, ties at the rounding included."""
    ids = [f"s{i}" for i in range(len(rates))]
    plans = [{"rate": str(r), "fixed_amount": "0.01"} for r in rates]
    items = items_table(
        [{"item_id": i, "model": "percentage", **p} for i, p in zip(ids, plans, strict=True)]
    )
    events = events_table({i: [(n, "x", str(a)) for n, a in enumerate(amounts)] for i in ids})
    rows = priced(items, None, events)
    for i, plan in zip(ids, plans, strict=True):
        assert rows[i]["amount_precise"] == percentage_oracle(plan, amounts)


@st.composite
def amounts_to_round(draw: st.DrawFn) -> tuple[Decimal, str]:
    code = draw(st.sampled_from(sorted(MINOR_UNITS)))
    unit = Decimal(1).scaleb(-minor_units(code))
    if draw(st.booleans()):  # a tie: a whole number of minor units and a half
        return (draw(st.integers(-(10**9), 10**9)) + Decimal("0.5")) * unit, code
    return draw(st.decimals(min_value=-(10**13), max_value=10**13, places=12)), code


@settings(max_examples=15, deadline=None)
@given(values=st.lists(amounts_to_round(), min_size=1, max_size=40))
def test_rounding_is_half_even_within_half_a_minor_unit(values: list[tuple[Decimal, str]]) -> None:
    ids = [f"r{i:03d}" for i in range(len(values))]
    # Negative amounts through a negative unit price: the rule is symmetric about zero.
    items = items_table(
        [
            {
                "item_id": i,
                "model": "per_unit",
                "currency": c,
                "quantity": abs(x),
                "unit_amount": 1 if x >= 0 else -1,
            }
            for i, (x, c) in zip(ids, values, strict=True)
        ]
    )
    rows = priced(items)
    for i, (x, code) in zip(ids, values, strict=True):
        rounded = rows[i]["amount"]
        unit = Decimal(1).scaleb(-minor_units(code))
        assert rows[i]["amount_precise"] == x
        assert rounded == round_half_even(x, code)
        assert abs(rounded - x) <= unit / 2
        if abs(rounded - x) == unit / 2:  # a tie went to the even neighbour
            assert (rounded / unit) % 2 == 0
    # The macro on its own, on a column of amounts and a column of decimals.
    install_rounding(CON)
    table = pa.table(
        {
            "x": pa.array([x for x, _ in values], DEC),
            "d": pa.array([minor_units(c) for _, c in values], pa.int32()),
        }
    )
    CON.register("to_round", table)
    got = CON.sql("SELECT mc_round_half_even(x, d) FROM to_round").fetchall()
    assert [g for (g,) in got] == [round_half_even(x, c) for x, c in values]
