"""Periods and the landing calendar: the one place month arithmetic is written.

A period is a calendar month named ``YYYY-MM`` (UTC today; a later change gives entities
their local calendars). A month's *landing calendar* is every landing day that must be in
before it may close: its own days, and the first days of the next month up to a cutoff,
because events stamped late on the last day land the next morning and uploads run behind.
The default cutoff is the day before the month-end close fires.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from dateutil.relativedelta import relativedelta

_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class PeriodError(ValueError):
    """A period that is not a month written as YYYY-MM."""


def parse_period(value: str) -> str:
    """``value`` if it names a month as YYYY-MM; a clear error otherwise."""
    if not _PERIOD.match(value):
        hint = f" (did you mean {value[:7]}?)" if _PERIOD.match(value[:7]) else ""
        raise PeriodError(f"period {value!r}: expected a month as YYYY-MM{hint}")
    return value


def period_of(day: date) -> str:
    return f"{day:%Y-%m}"


def month_bounds(period: str) -> tuple[date, date]:
    """First and last day of the month."""
    first = date.fromisoformat(f"{parse_period(period)}-01")
    return first, first + relativedelta(months=1, days=-1)


def next_period(period: str) -> str:
    return period_of(month_bounds(period)[0] + relativedelta(months=1))


def previous_period(period: str) -> str:
    return period_of(month_bounds(period)[0] - relativedelta(months=1))


def periods_between(first: str, last: str) -> list[str]:
    """Every month from ``first`` through ``last``, in order."""
    months, period = [], first
    while period <= last:
        months.append(period)
        period = next_period(period)
    return months


def days_between(first: date, last: date) -> list[date]:
    """Every day from ``first`` through ``last``."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def landing_cutoff(period: str, cutoff_day: int) -> date:
    """The last landing day of the month's calendar: day ``cutoff_day`` of the next month
    (0: the month's own last day)."""
    _, last = month_bounds(period)
    return last + timedelta(days=cutoff_day)


def landing_calendar(period: str, cutoff_day: int) -> list[date]:
    """The landing days that must be in (ingested, or confirmed by a controller) before the
    month may close."""
    first, _ = month_bounds(period)
    return days_between(first, landing_cutoff(period, cutoff_day))
