"""The landing days a run covers: one partition, or every day of a backfill range."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg


def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    # A single-run backfill hands over a whole range: every day in it is written, in order.
    window = context.partition_time_window
    first = window.start.date()
    count = (window.end.date() - first).days
    return [first + timedelta(days=i) for i in range(count)]
