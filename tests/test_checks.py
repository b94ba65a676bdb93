"""Check logic called directly: it passes on sound data and fails, saying why, on broken data."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import pytest

from checks.ingest import daily_usage_ties, lines_accounted_for
from checks.outcome import validate_schema
from checks.schemas import DuplicateEvents, QuarantinedEvents

F = "2026-09-03/a.ndjson"


def placed(rows: list[tuple[str, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"file": pl.String, "line_no": pl.Int64}, orient="row")


def test_lines_accounted_for_passes_when_each_line_is_placed_once() -> None:
    outcome = lines_accounted_for(
        {F: 4},
        usage_events=placed([(F, 1), (F, 1), (F, 4)]),  # line 1 feeds two meters
        quarantined=placed([(F, 2)]),
        duplicates=placed([(F, 3)]),
    )
    assert outcome.passed, outcome.description
    assert outcome.description == "4 lines = 2 accepted + 1 duplicates + 1 quarantined"


@pytest.mark.parametrize(
    ("usage", "quarantined", "duplicates", "message"),
    [
        ([(F, 1)], [(F, 2)], [], "1 file(s) where raw ≠ accepted + duplicates + quarantined"),
        ([(F, 1), (F, 2)], [(F, 2)], [(F, 3)], "1 line(s) placed in more than one table"),
        ([(F, 1), (F, 2)], [(F, 7)], [], "1 line number(s) not in the landing files"),
    ],
)
def test_lines_accounted_for_fails_on_lost_doubled_or_invented_lines(
    usage: list[tuple[str, int]],
    quarantined: list[tuple[str, int]],
    duplicates: list[tuple[str, int]],
    message: str,
) -> None:
    outcome = lines_accounted_for({F: 3}, placed(usage), placed(quarantined), placed(duplicates))
    assert not outcome.passed
    assert message in outcome.description


def test_schema_check_reports_unknown_reason_codes() -> None:
    frame = pl.DataFrame(
        {
            "received_date": [date(2026, 9, 3)],
            "file": [F],
            "line_no": [1],
            "reason": ["bad_vibes"],
            "detail": ["?"],
            "raw": ["x"],
            "raw_hex": [None],
            "source": [None],
            "event_id": [None],
            "event_type": [None],
            "customer_id": [None],
            "event_time": [None],
        },
        schema_overrides={
            "raw_hex": pl.String,
            "source": pl.String,
            "event_id": pl.String,
            "event_type": pl.String,
            "customer_id": pl.String,
            "event_time": pl.Datetime("us", "UTC"),
        },
    )
    outcome = validate_schema(QuarantinedEvents, frame)
    assert not outcome.passed
    assert "reason" in str(outcome.metadata["summary"])


def test_duplicate_must_point_at_an_earlier_original() -> None:
    frame = pl.DataFrame(
        {
            "received_date": [date(2026, 9, 3)],
            "file": [F],
            "line_no": [2],
            "source": ["s"],
            "event_id": ["e"],
            "first_received_date": [date(2026, 9, 3)],
            "first_file": [F],
            "first_line_no": [5],
        }
    )
    outcome = validate_schema(DuplicateEvents, frame)
    assert not outcome.passed
    assert "original_arrived_first" in str(outcome.metadata["summary"])


def test_daily_usage_must_tie_to_events() -> None:
    events = pl.DataFrame(
        {"meter": ["tokens", "tokens"], "quantity": [Decimal("1.5"), Decimal("2")]},
        schema={"meter": pl.String, "quantity": pl.Decimal(38, 12)},
    )
    daily = pl.DataFrame(
        {
            "meter": ["tokens"],
            "aggregation": ["SUM"],
            "quantity": [Decimal("3.5")],
            "event_count": [2],
            "first_event_time": [datetime(2026, 9, 3, tzinfo=UTC)],
        },
        schema_overrides={"quantity": pl.Decimal(38, 12)},
    )
    assert daily_usage_ties(events, daily).passed
    short = daily.with_columns(quantity=pl.lit(Decimal("3.49"), pl.Decimal(38, 12)))
    outcome = daily_usage_ties(events, short)
    assert not outcome.passed
    assert outcome.description == "1 meter(s) where daily usage does not tie to usage events"
