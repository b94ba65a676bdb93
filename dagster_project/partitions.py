"""Partitions, defined once: landing days for ingest and usage, months for the close."""

from __future__ import annotations

import os

import dagster as dg

# The first landing day the pipeline knows. Partitions before it do not exist in the UI;
# set METERCLOSE_FIRST_DAY to reach further back.
FIRST_DAY = os.environ.get("METERCLOSE_FIRST_DAY", "2026-01-01")

# end_offset=1 makes today's landing day a partition too: files land all day long.
usage_daily_partition = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1)

# Calendar months, up to the last complete one: a month is rated and closed after it ends.
close_monthly_partition = dg.MonthlyPartitionsDefinition(start_date=f"{FIRST_DAY[:7]}-01")
