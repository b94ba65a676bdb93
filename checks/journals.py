"""Checks on journals: each balances in transaction and functional currency, and every
line has the account and the FX rate it needs."""

from __future__ import annotations

import polars as pl

from checks.outcome import CheckOutcome, markdown_table


def journals_balance(lines: pl.DataFrame) -> CheckOutcome:
    """Debits equal credits per journal, to the cent, in both currencies."""
    totals = lines.group_by("journal_id").agg(
        debit=pl.col("debit").sum(),
        credit=pl.col("credit").sum(),
        functional_debit=pl.col("functional_debit").sum(),
        functional_credit=pl.col("functional_credit").sum(),
        unconverted=pl.col("functional_debit").is_null().sum(),
    )
    broken = totals.filter(
        (pl.col("debit") != pl.col("credit"))
        | (pl.col("functional_debit") != pl.col("functional_credit"))
        | (pl.col("unconverted") > 0)
    ).sort("journal_id")
    return CheckOutcome(
        passed=broken.height == 0,
        description=(
            f"{broken.height} of {totals.height} journals do not balance in both currencies"
            if broken.height
            else f"all {totals.height} journals balance in transaction and functional currency"
        ),
        metadata={"journals": totals.height, "unbalanced": markdown_table(broken)},
    )


def lines_mapped(lines: pl.DataFrame) -> CheckOutcome:
    """Every line has an account; every line but rounding has an FX rate."""
    missing = lines.filter(
        pl.col("account").is_null()
        | (pl.col("fx_rate").is_null() & (pl.col("account_role") != "rounding"))
    )
    summary = (
        missing.group_by("entity_id", "account_role", "product_family", "currency")
        .agg(lines=pl.len(), no_account=pl.col("account").is_null().sum())
        .sort("entity_id", "account_role")
    )
    return CheckOutcome(
        passed=missing.height == 0,
        description=(
            f"{missing.height} line(s) without an account or FX rate (see the exceptions)"
            if missing.height
            else f"all {lines.height} lines mapped to accounts and rates"
        ),
        metadata={"unmapped": markdown_table(summary)},
    )


def reconciliation_explained(reconciliation: pl.DataFrame) -> CheckOutcome:
    """No control with a variance nothing explains."""
    unexplained = reconciliation.filter(pl.col("status") == "unexplained")
    explained = reconciliation.filter(pl.col("status") == "explained")
    return CheckOutcome(
        passed=unexplained.height == 0,
        description=(
            f"{unexplained.height} control(s) with an unexplained variance"
            if unexplained.height
            else f"{reconciliation.height} controls: {explained.height} explained variance(s), "
            "the rest tie"
        ),
        metadata={
            "controls": reconciliation.height,
            "unexplained": markdown_table(
                unexplained.select(
                    "entity_id", "currency", "control", "expected", "actual", "variance"
                )
            ),
            "explained": markdown_table(
                explained.select("entity_id", "control", "variance", "explanation")
            ),
        },
    )
