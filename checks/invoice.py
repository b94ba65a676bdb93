"""Checks on invoice lines: they carry every rated line, rounded once, and the prepaid
balance they draw on ties to the drawdown lines."""

from __future__ import annotations

import polars as pl

from checks.billing import HALF_UNIT
from checks.outcome import CheckOutcome, markdown_table

_RATED = ["usage", "minimum_true_up"]


def invoice_ties_to_billable_usage(invoice: pl.DataFrame, billable: pl.DataFrame) -> CheckOutcome:
    """Every billable_usage row is one invoice line with the same amount, per contract and
    currency; every line is its precise amount rounded once (within half a minor unit)."""
    keys = ["contract_id", "currency"]
    billed = (
        invoice.filter(pl.col("kind").is_in(_RATED))
        .group_by(keys)
        .agg(invoice_lines=pl.len(), invoiced=pl.col("amount").sum())
    )
    rated = billable.group_by(keys).agg(rated_lines=pl.len(), rated=pl.col("amount").sum())
    joined = rated.join(billed, on=keys, how="full", coalesce=True).with_columns(
        pl.col("rated_lines", "invoice_lines").fill_null(0),
        pl.col("rated", "invoiced").fill_null(0),
    )
    differing = joined.filter(
        (pl.col("rated_lines") != pl.col("invoice_lines")) | (pl.col("rated") != pl.col("invoiced"))
    ).sort(keys)
    # An adjustment is the difference of two lines rounded once each, so it may sit up to
    # a whole minor unit from its precise difference; every other line, half a unit.
    rounding = invoice.join(HALF_UNIT, on="currency", how="left").filter(
        (pl.col("amount") - pl.col("amount_precise")).abs()
        > pl.when(pl.col("kind") == "prior_period_adjustment")
        .then(2 * pl.col("half_unit"))
        .otherwise(pl.col("half_unit"))
    )
    passed = differing.height == 0 and rounding.height == 0
    return CheckOutcome(
        passed=passed,
        description=(
            f"{billable.height} rated lines invoiced, all {invoice.height} lines rounded once"
            if passed
            else f"{differing.height} contract(s) whose invoice lines differ from "
            f"billable_usage; {rounding.height} line(s) rounded by more than half a minor unit"
        ),
        metadata={
            "rated_lines": billable.height,
            "invoice_lines": invoice.height,
            "differing": markdown_table(differing),
            "badly_rounded": markdown_table(
                rounding.select("line_id", "amount_precise", "amount", "currency")
            ),
        },
    )


def prepaid_ties(invoice: pl.DataFrame, balances: pl.DataFrame) -> CheckOutcome:
    """What each contract drew from its prepaid balance is what its lines were paid with and
    what its drawdown lines take off its invoices."""
    lines = invoice.group_by("contract_id").agg(
        applied=pl.col("prepaid_applied").sum(),
        drawdown=-pl.col("amount").filter(pl.col("kind") == "prepaid_drawdown").sum(),
    )
    joined = (
        balances.select("contract_id", "drawn")
        .join(lines, on="contract_id", how="full", coalesce=True)
        .with_columns(pl.col("drawn", "applied", "drawdown").fill_null(0))
    )
    broken = joined.filter(
        (pl.col("drawn") != pl.col("applied")) | (pl.col("drawn") != pl.col("drawdown"))
    ).sort("contract_id")
    return CheckOutcome(
        passed=broken.height == 0,
        description=(
            f"{broken.height} contract(s) whose prepaid drawdown does not tie"
            if broken.height
            else f"{balances.height} prepaid balances tie to their drawdown lines"
        ),
        metadata={"balances": balances.height, "broken": markdown_table(broken)},
    )
