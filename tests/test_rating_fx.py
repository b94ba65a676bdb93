"""FX completeness: which entity × pair × day has no quote that counts, and how it reads."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pyarrow as pa

from rating.fx import describe_missing, fx_pairs, missing_quotes

SEPT = [date(2026, 9, 1) + timedelta(days=n) for n in range(30)]


def quotes(*rows: tuple[str, str, str]) -> pa.Table:
    return pa.table(
        {
            "date": [date.fromisoformat(d) for d, _, _ in rows],
            "from_currency": ["USD"] * len(rows),
            "to_currency": [c for _, c, _ in rows],
            "rate": [r for _, _, r in rows],
            "rate_type": ["daily"] * len(rows),
        }
    )


def weekdays(currency: str, rate: str) -> list[tuple[str, str, str]]:
    return [(d.isoformat(), currency, rate) for d in SEPT if d.weekday() < 5]


PAIRS = fx_pairs(
    pl.DataFrame(
        {
            "entity_id": ["EU01", "EU01", "EU01", "US01"],
            "currency": ["USD", "GBP", "EUR", "USD"],
        }
    ),
    pa.table({"entity_id": ["EU01", "US01"], "functional_currency": ["EUR", "USD"]}),
)


def test_only_pairs_across_currencies_need_a_rate() -> None:
    assert PAIRS.rows() == [("EU01", "GBP", "EUR"), ("EU01", "USD", "EUR")]


def test_a_weekend_without_quotes_is_missing_unless_a_fallback_allows_it() -> None:
    fx = quotes(*weekdays("EUR", "0.92"), *weekdays("GBP", "0.79"))
    missing = missing_quotes(fx, PAIRS, SEPT)
    # 2026-09-05/06, 12/13, 19/20, 26/27 are weekends: both pairs miss them (GBP→EUR is
    # a cross rate through USD, so it needs both legs).
    weekend = [d for d in SEPT if d.weekday() >= 5]
    assert missing.filter(pl.col("currency") == "USD")["day"].to_list() == weekend
    assert missing.filter(pl.col("currency") == "GBP")["day"].to_list() == weekend
    assert describe_missing(missing, limit=2) == [
        "EU01 GBP→EUR on 2026-09-05 … 2026-09-06 (2 days)",
        "EU01 GBP→EUR on 2026-09-12 … 2026-09-13 (2 days)",
        "and 6 more",
    ]
    # Friday's quote serves Saturday and Sunday with a 2-day fallback, not with a 1-day one.
    assert missing_quotes(fx, PAIRS, SEPT, max_age_days=2).height == 0
    assert missing_quotes(fx, PAIRS, SEPT, max_age_days=1)["day"].unique().to_list() == [
        d for d in SEPT if d.weekday() == 6
    ]


def test_a_feed_that_stops_mid_month_names_the_days_after() -> None:
    fx = quotes(
        *[(d.isoformat(), "EUR", "0.92") for d in SEPT if d.day <= 15],
        *[(d.isoformat(), "GBP", "0.79") for d in SEPT],
    )
    missing = missing_quotes(fx, PAIRS, SEPT)
    # The EUR leg is missing from the 16th: both of EU01's pairs need it.
    assert describe_missing(missing) == [
        "EU01 GBP→EUR on 2026-09-16 … 2026-09-30 (15 days)",
        "EU01 USD→EUR on 2026-09-16 … 2026-09-30 (15 days)",
    ]
