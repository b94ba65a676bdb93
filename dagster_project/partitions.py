"""Partitions, defined once: landing days for ingest and usage, months for the close."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from dagster_project.settings import load_settings

_settings = load_settings()
FIRST_DAY = _settings.first_day
# With METERCLOSE_TODAY set the partitions end on the product's clock; unset, Dagster's
# own wall clock moves them on (a long-running `dagster dev` sees each new day).
_today = _settings.today_override

# end_offset=1 makes today's landing day a partition too: files land all day long.
usage_daily_partition = dg.DailyPartitionsDefinition(
    start_date=FIRST_DAY.isoformat(),
    end_offset=1,
    end_date=(_today + timedelta(days=1)).isoformat() if _today else None,
)

# The landing days themselves, through yesterday (end_offset=0): a day is due once it has
# ended, which is what the landing freshness check asks of the latest partition.
landing_daily_partition = dg.DailyPartitionsDefinition(
    start_date=FIRST_DAY.isoformat(),
    end_offset=0,
    end_date=_today.isoformat() if _today else None,
)

# Calendar months, keyed as the product names periods (2026-10), up to the last one that
# has ended: a month is rated and closed after it ends (and once its landing calendar is
# complete, which the close itself checks).
close_monthly_partition = dg.MonthlyPartitionsDefinition(
    start_date=f"{FIRST_DAY:%Y-%m}",
    fmt="%Y-%m",
    end_date=f"{_today:%Y-%m}" if _today else None,
)
