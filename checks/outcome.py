"""The result of a data-quality check, independent of the orchestrator that reports it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandera.polars as pa
import polars as pl


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict[str, str | int | float] = field(default_factory=dict)


def validate_schema(schema: type[pa.DataFrameModel], frame: pl.DataFrame) -> CheckOutcome:
    """Validate a frame lazily, so one failure report lists every broken column and check."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        summary = (
            cases.group_by("column", "check").agg(pl.len().alias("failures")).sort("column")
            if cases.height
            else cases
        )
        return CheckOutcome(
            passed=False,
            description=f"{schema.__name__}: {cases.height} failure case(s)",
            metadata={
                "failure_cases": cases.height,
                "summary": _markdown(summary),
            },
        )
    return CheckOutcome(
        passed=True,
        description=f"{schema.__name__}: {frame.height} rows valid",
        metadata={"rows": frame.height},
    )


def _markdown(frame: pl.DataFrame, limit: int = 20) -> str:
    """A small Markdown table for the Dagster UI, without pandas."""
    head = frame.head(limit)
    columns = head.columns
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in head.iter_rows():
        lines.append("| " + " | ".join("" if v is None else str(v) for v in row) + " |")
    if frame.height > limit:
        lines.append(f"\n… {frame.height - limit} more rows")
    return "\n".join(lines)


markdown_table = _markdown
