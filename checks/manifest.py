"""Compare ingest outcomes line by line with a generator's ground-truth manifest."""

from __future__ import annotations

import polars as pl

from checks.outcome import CheckOutcome, markdown_table

KEY = ["received_date", "file", "line_no"]


def actual_outcomes(
    usage_events: pl.LazyFrame, quarantined: pl.LazyFrame, duplicates: pl.LazyFrame
) -> pl.LazyFrame:
    """One row per landing line the pipeline placed: (day, file, line, outcome, reason)."""
    return pl.concat(
        [
            usage_events.select(KEY)
            .unique()
            .with_columns(outcome=pl.lit("accepted"), reason=pl.lit(None, pl.String)),
            duplicates.select(KEY).with_columns(
                outcome=pl.lit("duplicate"), reason=pl.lit(None, pl.String)
            ),
            quarantined.select(*KEY, pl.lit("quarantined").alias("outcome"), "reason"),
        ]
    )


def compare_with_manifest(manifest: pl.LazyFrame, actual: pl.LazyFrame) -> CheckOutcome:
    """Every manifest line must be placed once, with the expected outcome and reason."""
    expected = manifest.select(
        *KEY,
        pl.col("outcome").alias("expected"),
        pl.col("reason").alias("expected_reason"),
        "fault",
    )
    joined = (
        expected.join(actual, on=KEY, how="full", coalesce=True)
        .filter(
            pl.col("expected").is_null()
            | pl.col("outcome").is_null()
            | (pl.col("expected") != pl.col("outcome"))
            | (pl.col("expected_reason").fill_null("") != pl.col("reason").fill_null(""))
        )
        .collect()
    )
    lines = manifest.select(pl.len()).collect().item()
    placed = actual.select(pl.len()).collect().item()
    by_fault = (
        manifest.group_by("fault", "outcome", "reason").agg(lines=pl.len()).sort("fault").collect()
    )
    return CheckOutcome(
        passed=joined.height == 0 and placed == lines,
        description=(
            f"{lines} manifest lines, every one placed as expected"
            if joined.height == 0 and placed == lines
            else f"{joined.height} of {lines} lines differ from the manifest ({placed} placed)"
        ),
        metadata={
            "lines": lines,
            "mismatches": joined.height,
            "by_fault": markdown_table(by_fault, limit=40),
            "first_mismatches": markdown_table(joined.sort(KEY), limit=10),
        },
    )
