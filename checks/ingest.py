"""Checks on a landing day's ingest: every line accounted for once, daily usage ties out."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from checks.outcome import CheckOutcome, markdown_table


def lines_accounted_for(
    raw_lines: Mapping[str, int],
    usage_events: pl.DataFrame,
    quarantined: pl.DataFrame,
    duplicates: pl.DataFrame,
) -> CheckOutcome:
    """raw = accepted + duplicates + quarantined per file, and no line in two places.

    ``raw_lines`` comes from the landing files themselves; the other three are the
    written outputs, so the check covers what was actually stored.
    """
    placed = pl.concat(
        [
            usage_events.select("file", "line_no")
            .unique()
            .with_columns(outcome=pl.lit("accepted")),
            duplicates.select("file", "line_no").with_columns(outcome=pl.lit("duplicate")),
            quarantined.select("file", "line_no").with_columns(outcome=pl.lit("quarantined")),
        ]
    )
    twice = placed.group_by("file", "line_no").len().filter(pl.col("len") > 1)
    per_file = pl.DataFrame(
        {"file": list(raw_lines), "raw": list(raw_lines.values())},
        schema={"file": pl.String, "raw": pl.Int64},
    ).join(
        placed.pivot(on="outcome", index="file", values="line_no", aggregate_function="len")
        if placed.height
        else pl.DataFrame(schema={"file": pl.String}),
        on="file",
        how="full",
        coalesce=True,
    )
    for name in ("accepted", "duplicate", "quarantined"):
        if name not in per_file.columns:
            per_file = per_file.with_columns(pl.lit(0, pl.Int64).alias(name))
    per_file = per_file.with_columns(
        pl.col("raw", "accepted", "duplicate", "quarantined").fill_null(0).cast(pl.Int64)
    ).with_columns(
        variance=pl.col("raw") - pl.col("accepted") - pl.col("duplicate") - pl.col("quarantined")
    )
    # Every line number 1..raw must be present: a count can match while lines are swapped.
    out_of_range = placed.join(per_file.select("file", "raw"), on="file", how="left").filter(
        (pl.col("line_no") < 1) | (pl.col("line_no") > pl.col("raw").fill_null(0))
    )
    unbalanced = per_file.filter(pl.col("variance") != 0)
    passed = twice.height == 0 and unbalanced.height == 0 and out_of_range.height == 0
    totals = per_file.select(pl.col("raw", "accepted", "duplicate", "quarantined").sum()).row(
        0, named=True
    )
    problems = []
    if unbalanced.height:
        problems.append(
            f"{unbalanced.height} file(s) where raw ≠ accepted + duplicates + quarantined"
        )
    if twice.height:
        problems.append(f"{twice.height} line(s) placed in more than one table")
    if out_of_range.height:
        problems.append(f"{out_of_range.height} line number(s) not in the landing files")
    return CheckOutcome(
        passed=passed,
        description="; ".join(problems)
        or (
            f"{totals['raw']} lines = {totals['accepted']} accepted + "
            f"{totals['duplicate']} duplicates + {totals['quarantined']} quarantined"
        ),
        metadata={
            **{k: int(v) for k, v in totals.items()},
            "files": markdown_table(per_file.sort("file")),
        },
    )


def daily_usage_ties(usage_events: pl.DataFrame, daily_usage: pl.DataFrame) -> CheckOutcome:
    """Daily usage holds every accepted event once and adds up to it for SUM and COUNT."""
    from_events = usage_events.group_by("meter").agg(
        events=pl.len(), quantity=pl.col("quantity").sum()
    )
    from_daily = daily_usage.group_by("meter").agg(
        daily_events=pl.col("event_count").sum(),
        daily_quantity=pl.when(pl.col("aggregation").is_in(["SUM", "COUNT"]))
        .then(pl.col("quantity"))
        .sum(),
        additive=pl.col("aggregation").is_in(["SUM", "COUNT"]).all(),
    )
    joined = (
        from_events.join(from_daily, on="meter", how="full", coalesce=True)
        .with_columns(pl.col("events", "daily_events").fill_null(0))
        .sort("meter")
    )
    mismatched = joined.filter(
        (pl.col("events") != pl.col("daily_events"))
        | (
            pl.col("additive").fill_null(False)
            & (pl.col("quantity").fill_null(0) != pl.col("daily_quantity").fill_null(0))
        )
    )
    return CheckOutcome(
        passed=mismatched.height == 0,
        description=(
            f"{mismatched.height} meter(s) where daily usage does not tie to usage events"
            if mismatched.height
            else f"{int(joined['events'].sum())} event rows tie out across {joined.height} meters"
        ),
        metadata={"by_meter": markdown_table(joined.drop("additive"))},
    )
