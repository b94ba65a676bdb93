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
    written outputs, so the check covers what was actually stored. Lines are compared as
    (file number, line number) integer pairs: a day holds hundreds of thousands of them.
    """
    outputs = {"accepted": usage_events, "duplicate": duplicates, "quarantined": quarantined}
    names = sorted(
        set(raw_lines).union(*(set(frame["file"].unique().to_list()) for frame in outputs.values()))
    )
    files = pl.Enum(names)

    def positions(frame: pl.DataFrame, outcome: str) -> pl.DataFrame:
        return frame.select(
            file_no=pl.col("file").cast(files).to_physical(),
            line_no=pl.col("line_no"),
            outcome=pl.lit(outcome),
        )

    placed = pl.concat(
        [
            # A line that feeds several meters is one accepted line.
            positions(usage_events, "accepted").unique(["file_no", "line_no"]),
            positions(duplicates, "duplicate"),
            positions(quarantined, "quarantined"),
        ]
    )
    twice = placed.group_by("file_no", "line_no").len().filter(pl.col("len") > 1).height
    raw = pl.DataFrame(
        {
            "file_no": range(len(names)),
            "file": names,
            "raw": [raw_lines.get(name) for name in names],
        },
        schema={"file_no": placed.schema["file_no"], "file": pl.String, "raw": pl.Int64},
    )
    counts = placed.group_by("file_no", "outcome").len()
    per_file = raw.with_columns(
        pl.lit(0, pl.Int64).alias(name) for name in ("accepted", "duplicate", "quarantined")
    )
    for name in ("accepted", "duplicate", "quarantined"):
        per_file = per_file.update(
            counts.filter(pl.col("outcome") == name).select(
                "file_no", pl.col("len").cast(pl.Int64).alias(name)
            ),
            on="file_no",
        )
    # A file in the outputs but not among the landing files has no lines to account for.
    per_file = (
        per_file.with_columns(pl.col("raw").fill_null(0))
        .with_columns(
            variance=pl.col("raw")
            - pl.col("accepted")
            - pl.col("duplicate")
            - pl.col("quarantined")
        )
        .drop("file_no")
    )
    # Every line number 1..raw must be present: a count can match while lines are swapped.
    out_of_range = placed.join(raw.select("file_no", "raw"), on="file_no", how="left").filter(
        (pl.col("line_no") < 1) | (pl.col("line_no") > pl.col("raw").fill_null(0))
    )
    unbalanced = per_file.filter(pl.col("variance") != 0)
    passed = twice == 0 and unbalanced.height == 0 and out_of_range.height == 0
    totals = per_file.select(pl.col("raw", "accepted", "duplicate", "quarantined").sum()).row(
        0, named=True
    )
    problems = []
    if unbalanced.height:
        problems.append(
            f"{unbalanced.height} file(s) where raw ≠ accepted + duplicates + quarantined"
        )
    if twice:
        problems.append(f"{twice} line(s) placed in more than one table")
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


def quarantine_rate(
    days: pl.DataFrame, warn_rate: float, error_rate: float
) -> tuple[CheckOutcome, str]:
    """Each landing day's quarantined share of its lines against two thresholds.

    ``days`` has one row per day: ``landing_day``, ``raw_lines``, ``quarantined``. Returns
    the outcome and its level: "ok", "warn" (a day above ``warn_rate``) or "error" (a day
    above ``error_rate``, whose month then closes only once a controller confirms it).
    """
    rated = days.with_columns(
        rate=pl.when(pl.col("raw_lines") > 0)
        .then(pl.col("quarantined") / pl.col("raw_lines"))
        .otherwise(0.0)
    )
    high = rated.filter(pl.col("rate") > warn_rate).sort("landing_day")
    level = (
        "ok" if high.height == 0 else "error" if high["rate"].max() > error_rate else "warn"  # type: ignore[operator]
    )
    shown = high.with_columns(rate=(pl.col("rate") * 100).round(2).cast(pl.String) + " %")
    if level == "ok":
        description = (
            f"every landing day quarantined at most {warn_rate:.0%} of its lines"
            if rated.height
            else "no landing day ingested"
        )
    else:
        worst = ", ".join(
            f"{d} {r}" for d, r in zip(shown["landing_day"], shown["rate"], strict=True)
        )
        threshold = error_rate if level == "error" else warn_rate
        description = f"quarantined above {threshold:.0%} of lines: {worst}"
    outcome = CheckOutcome(
        passed=level == "ok",
        description=description,
        metadata={
            "warn_above": f"{warn_rate:.2%}",
            "error_above": f"{error_rate:.2%}",
            "days_above": high.height,
            "days": markdown_table(shown.select("landing_day", "raw_lines", "quarantined", "rate")),
        },
    )
    return outcome, level
