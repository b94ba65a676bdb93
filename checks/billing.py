"""Checks on rated usage: each amount is explained by its breakdown and rounded once."""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from checks.outcome import CheckOutcome, markdown_table
from rating.currency import MINOR_UNITS

# Half a minor unit per currency: the most that rounding once may move an amount.
HALF_UNIT = pl.DataFrame(
    {
        "currency": list(MINOR_UNITS),
        "half_unit": [Decimal(5) / Decimal(10) ** (m + 1) for m in MINOR_UNITS.values()],
    },
    schema={"currency": pl.String, "half_unit": pl.Decimal(38, 12)},
)


def breakdown_ties(billable: pl.DataFrame) -> CheckOutcome:
    """Usage lines: the tier breakdown sums to amount_precise, and amount is amount_precise
    rounded to the currency's minor unit (never more than half a unit away)."""
    usage = (
        billable.filter(pl.col("kind") == "usage")
        .join(HALF_UNIT, on="currency", how="left")
        .with_columns(
            breakdown_sum=pl.col("breakdown")
            .list.eval(pl.element().struct.field("amount"))
            .list.sum(),
        )
    )
    broken = usage.filter(
        (pl.col("breakdown_sum") != pl.col("amount_precise"))
        | ((pl.col("amount") - pl.col("amount_precise")).abs() > pl.col("half_unit"))
    )
    return CheckOutcome(
        passed=broken.height == 0,
        description=(
            f"{broken.height} line(s) whose breakdown or rounding does not tie"
            if broken.height
            else f"{usage.height} usage lines tie to their breakdowns"
        ),
        metadata={
            "lines_checked": usage.height,
            "broken": markdown_table(
                broken.select(
                    "contract_id",
                    "segment_start",
                    "charge_id",
                    "amount_precise",
                    "breakdown_sum",
                    "amount",
                )
            ),
        },
    )
