"""Terms in force: a month cut into service segments, each usage charge priced as agreed."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import duckdb
import pytest

from dagster_project.settings import REPO_ROOT
from rating.ingest import connect
from rating.terms import reference_tables, terms_in_force
from resources.reference import ReferenceData

OCT_1, OCT_31 = date(2026, 10, 1), date(2026, 10, 31)


@pytest.fixture(scope="module")
def october() -> duckdb.DuckDBPyConnection:
    reference = ReferenceData(REPO_ROOT / "data" / "reference")
    plans = reference.plans()
    con = connect()
    terms_in_force(con, reference_tables(plans, reference.contracts(plans)), OCT_1, OCT_31)
    return con


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    return con.sql(sql).fetchall()


def test_amendments_cut_the_month_and_cancellations_end_it(
    october: duckdb.DuckDBPyConnection,
) -> None:
    segments = rows(
        october,
        "SELECT contract_id, segment_start, segment_end, base_plan_id FROM segments "
        "WHERE contract_id IN ('C-0007', 'C-0071', 'C-0201') ORDER BY ALL",
    )
    assert segments == [
        ("C-0007", OCT_1, OCT_31, "growth-usd"),  # a price override cuts only its charge
        ("C-0071", OCT_1, date(2026, 10, 19), "scale-eur"),  # cancelled from the 20th
        ("C-0201", date(2026, 10, 12), OCT_31, "addon-usd"),  # an add-on starting mid-month
    ]
    charges = rows(
        october,
        "SELECT charge_id, count(*) FROM charge_terms WHERE contract_id = 'C-0007' "
        "GROUP BY ALL ORDER BY ALL",
    )
    assert ("api-calls", 2) in charges  # overridden on the 12th
    assert all(n == 1 for charge, n in charges if charge != "api-calls")


def test_segments_cover_each_contract_day_once(october: duckdb.DuckDBPyConnection) -> None:
    overlaps = rows(
        october,
        "SELECT a.contract_id FROM charge_terms a JOIN charge_terms b "
        "USING (contract_id, charge_id) "
        "WHERE a.segment_start < b.segment_start AND a.segment_end >= b.segment_start",
    )
    assert overlaps == []
    bad = rows(october, "SELECT * FROM segments WHERE segment_end < segment_start")
    assert bad == []


def test_price_overrides_apply_from_their_day(october: duckdb.DuckDBPyConnection) -> None:
    seats = rows(
        october,
        "SELECT segment_start, unit_amount FROM charge_terms "
        "WHERE contract_id = 'C-0021' AND charge_id = 'seats' ORDER BY 1",
    )
    assert seats == [(OCT_1, Decimal("18")), (date(2026, 10, 15), Decimal("14.4"))]
    tiers = rows(
        october,
        "SELECT segment_start, tier_no, up_to, unit_amount FROM term_tiers "
        "WHERE contract_id = 'C-0007' AND charge_id = 'api-calls' AND tier_no = 1 ORDER BY 1",
    )
    assert tiers == [
        (OCT_1, 1, Decimal("100000"), Decimal("0.001")),
        (date(2026, 10, 12), 1, Decimal("100000"), Decimal("0.0008")),
    ]


def test_plan_change_brings_the_new_plans_charges(october: duckdb.DuckDBPyConnection) -> None:
    changed = rows(
        october,
        "SELECT c.contract_id, min(s.plan_id), max(s.plan_id), count(*) FROM segment_plans s "
        "JOIN (SELECT contract_id FROM term_changes WHERE type = 'plan_change' "
        "      AND effective_date BETWEEN DATE '2026-10-02' AND DATE '2026-10-31') c "
        "USING (contract_id) GROUP BY 1 ORDER BY 1",
    )
    assert changed, "the sample has a mid-October plan change"
    for _, first_plan, second_plan, segments in changed:
        assert first_plan != second_plan and segments == 2
