"""Days as integers (days since 1970-01-01), so that numpy can draw and compare them."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

MS_PER_DAY = 86_400_000
EPOCH = date(1970, 1, 1)
TAIL_DAYS = 5  # landing days after the last month (late events of the last month land there)


def to_date(day: int) -> date:
    return EPOCH + timedelta(days=int(day))


def to_day(d: date) -> int:
    return (d - EPOCH).days


def month_bounds(month: str) -> tuple[int, int]:
    """First and last day (days since epoch) of a YYYY-MM month."""
    try:
        y, m = (int(p) for p in month.split("-"))
        first = date(y, m, 1)
    except ValueError:
        raise ValueError(f"month {month!r}: expected YYYY-MM") from None
    if f"{y:04d}-{m:02d}" != month:
        raise ValueError(f"month {month!r}: expected YYYY-MM")
    return to_day(first), to_day(first) + calendar.monthrange(y, m)[1] - 1
