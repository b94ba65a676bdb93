"""Daily usage per customer, meter and group: figures that stay exact when re-aggregated.

A daily row must serve a billing segment of any length. SUM and COUNT add up; the others
carry the state that merges exactly: MAX its maximum, LATEST its value with the time and
event that set it, UNIQUE_COUNT its sorted distinct values, never just a day's count.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from rating.ingest import QUANTITY_TYPE

_DAILY_USAGE = f"""
SELECT received_date, usage_date, customer_id, meter, dims,
    any_value(aggregation) AS aggregation,
    CAST(CASE any_value(aggregation)
        WHEN 'SUM' THEN sum(quantity)
        WHEN 'COUNT' THEN count(*)
        WHEN 'MAX' THEN max(quantity)
        WHEN 'LATEST' THEN arg_max(quantity, (event_time, source, event_id))
        WHEN 'UNIQUE_COUNT' THEN count(DISTINCT unique_value)
    END AS {QUANTITY_TYPE}) AS quantity,
    count(*) AS event_count,
    CASE WHEN any_value(aggregation) = 'UNIQUE_COUNT'
         THEN list_sort(list(DISTINCT unique_value)) END AS distinct_values,
    CASE WHEN any_value(aggregation) = 'LATEST'
         THEN max(event_time) END AS latest_event_time,
    -- The event that set a LATEST value, as its own columns: merging days compares
    -- (time, source, event id) exactly as here, so ties break the same way.
    CASE WHEN any_value(aggregation) = 'LATEST'
         THEN arg_max(source, (event_time, source, event_id)) END AS latest_source,
    CASE WHEN any_value(aggregation) = 'LATEST'
         THEN arg_max(event_id, (event_time, source, event_id)) END AS latest_event_id,
    min(event_time) AS first_event_time,
    max(event_time) AS last_event_time
FROM (
    SELECT u.*, m.aggregation FROM read_parquet($files) u JOIN meters m USING (meter)
)
GROUP BY received_date, usage_date, customer_id, meter, dims
ORDER BY received_date, usage_date, customer_id, meter, dims
"""


def daily_usage(
    con: duckdb.DuckDBPyConnection, usage_event_files: Sequence[Path], meters: pa.Table
) -> pa.Table:
    """Aggregate accepted usage events into rows per usage day, customer, meter and dims."""
    con.register("meters", meters)
    return con.sql(
        _DAILY_USAGE, params={"files": [str(p) for p in usage_event_files]}
    ).to_arrow_table()
