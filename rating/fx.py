"""Which FX quotes a month needs and does not have: the close's completeness guard.

Rates are quoted from one base currency (``fx_rates.csv``: base → currency, ``daily``). A
line in a currency other than its entity's functional currency is converted at the rate of
a day; that rate rests on the quote of each leg that is not the base. A quote counts for a
day when it is that day's, or at most ``max_age_days`` older (0 unless a fallback is set,
for feeds that skip weekends). The journals use the same rule (``rating.journals``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import polars as pl
import pyarrow as pa


def fx_pairs(customers: pl.DataFrame, entities: pa.Table) -> pl.DataFrame:
    """Each entity's (currency, functional currency) pairs that need a rate: the currencies
    its customers are billed in, other than its own."""
    functional = pl.from_arrow(entities.select(["entity_id", "functional_currency"]))
    assert isinstance(functional, pl.DataFrame)
    return (
        customers.select("entity_id", "currency")
        .unique()
        .join(functional, on="entity_id")
        .filter(pl.col("currency") != pl.col("functional_currency"))
        .sort("entity_id", "currency")
    )


def missing_quotes(
    fx_rates: pa.Table, pairs: pl.DataFrame, days: Sequence[date], max_age_days: int = 0
) -> pl.DataFrame:
    """Every entity × pair × day without a quote that counts: entity_id, currency,
    functional_currency, day, sorted."""
    quotes = pl.from_arrow(fx_rates)
    assert isinstance(quotes, pl.DataFrame)
    base_currencies = quotes["from_currency"].unique().to_list()
    base = base_currencies[0] if base_currencies else None
    quotes = (
        quotes.filter(pl.col("rate_type") == "daily")
        .select(pl.col("to_currency").alias("leg"), pl.col("date").alias("quoted"))
        .unique()
        .sort("quoted")
    )
    needed = pairs.join(pl.DataFrame({"day": list(days)}, schema={"day": pl.Date}), how="cross")
    legs = (
        pl.concat(
            [
                needed.with_columns(leg=pl.col("currency")),
                needed.with_columns(leg=pl.col("functional_currency")),
            ]
        )
        .filter(pl.col("leg") != pl.lit(base))
        .sort("day")
    )
    # Both sides are sorted on the join key (quotes by date, legs by day), hence within
    # each leg too, which Polars cannot check when grouping.
    found = legs.join_asof(
        quotes,
        left_on="day",
        right_on="quoted",
        by="leg",
        strategy="backward",
        check_sortedness=False,
    )
    stale = found.filter(
        pl.col("quoted").is_null()
        | ((pl.col("day") - pl.col("quoted")).dt.total_days() > max_age_days)
    )
    return (
        stale.select("entity_id", "currency", "functional_currency", "day")
        .unique()
        .sort("entity_id", "currency", "functional_currency", "day")
    )


def describe_missing(missing: pl.DataFrame, limit: int = 6) -> list[str]:
    """``EU01 USD→EUR on 2026-11-16 … 2026-11-30 (15 days)``: runs of days as ranges."""
    runs = (
        missing.with_columns(
            run=(
                (pl.col("day").diff().dt.total_days() != 1).fill_null(True)
                | (pl.col("entity_id") != pl.col("entity_id").shift())
                | (pl.col("currency") != pl.col("currency").shift())
            )
            .fill_null(True)
            .cum_sum()
        )
        .group_by("run", maintain_order=True)
        .agg(
            pl.col("entity_id", "currency", "functional_currency").first(),
            first=pl.col("day").min(),
            last=pl.col("day").max(),
            days=pl.len(),
        )
    )
    described = [
        f"{r['entity_id']} {r['currency']}→{r['functional_currency']} on "
        + (f"{r['first']}" if r["days"] == 1 else f"{r['first']} … {r['last']} ({r['days']} days)")
        for r in runs.head(limit).iter_rows(named=True)
    ]
    if runs.height > limit:
        described.append(f"and {runs.height - limit} more")
    return described
