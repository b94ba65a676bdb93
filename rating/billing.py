"""Billable usage: a month's accepted usage at the billing grain, priced under the terms in
force — one row per contract × service segment × usage charge × price group.

Every usage charge of every contract in force gets a row, with or without usage (a first
tier's flat fee or a minimum still applies). UNIQUE_COUNT, MAX and LATEST are worked out
over the segment's events, never added up from days. Included units and minimums are
monthly figures, prorated by the days of the segment, exactly (integer arithmetic,
half-even at 12 places). A shortfall under a charge's minimum becomes its own line.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from rating.currency import currency_table, install_rounding
from rating.pricing import price_items

# x × days / month_days at 12 places, half-even, without the DOUBLE that DuckDB's decimal
# division goes through.
_PRORATE = """
CREATE OR REPLACE TEMP MACRO prorate(x, days, month_days) AS (
    WITH parts AS (
        SELECT CAST(x * 1000000000000 AS HUGEINT) * days AS n, CAST(month_days AS HUGEINT) AS d
    ), split AS (
        SELECT n // d AS q, n % d AS r, d FROM parts
    )
    SELECT CAST(
        CAST(q + CASE WHEN 2 * r > d OR (2 * r = d AND q % 2 = 1) THEN 1 ELSE 0 END
             AS DECIMAL(38,0)) * CAST(0.000000000001 AS DECIMAL(13,12))
        AS DECIMAL(38,12))
    FROM split
)
"""

_ITEM_ID = """
CREATE OR REPLACE TEMP MACRO item_id(contract_id, segment_start, charge_id, price_group) AS
    contract_id || '|' || strftime(segment_start, '%Y-%m-%d') || '|' || charge_id || '|'
        || price_group
"""

_NO_EVENTS = """
SELECT NULL::VARCHAR AS customer_id, NULL::VARCHAR AS meter, NULL::DATE AS usage_date,
    NULL::DECIMAL(38,12) AS quantity, NULL::VARCHAR AS unique_value, NULL::VARCHAR AS dims,
    NULL::TIMESTAMPTZ AS event_time, NULL::VARCHAR AS source, NULL::VARCHAR AS event_id
WHERE false
"""

_NO_DAYS = """
SELECT NULL::VARCHAR AS customer_id, NULL::VARCHAR AS meter, NULL::DATE AS usage_date,
    NULL::VARCHAR AS dims, NULL::VARCHAR AS aggregation, NULL::DECIMAL(38,12) AS quantity,
    NULL::BIGINT AS event_count, NULL::VARCHAR[] AS distinct_values,
    NULL::TIMESTAMPTZ AS latest_event_time, NULL::VARCHAR AS latest_source,
    NULL::VARCHAR AS latest_event_id
WHERE false
"""

# A charge's price group, from an event's dims: the same expression wherever an event is
# matched to an item, so usage totals and per-event fees land on the same line.
_PRICE_GROUP = """
CREATE OR REPLACE TEMP MACRO price_group(group_by, dims) AS
    CASE WHEN len(group_by) = 0 THEN '{}'
         ELSE CAST(to_json(map(group_by, list_transform(group_by,
              lambda g: json_extract_string(dims, '$.' || g)))) AS VARCHAR)
    END
"""

# Usage per charge segment and price group, in one pass over the month's events: each
# event joins the charge segment in force on its day, and each aggregate runs only over
# the events of its kind (FILTER), so a LATEST or UNIQUE_COUNT costs only its own meters.
_SEGMENT_USAGE = """
CREATE OR REPLACE TEMP TABLE segment_usage AS
WITH matched AS (
    SELECT t.contract_id, t.segment_start, t.charge_id, m.aggregation,
        price_group(t.group_by, e.dims) AS price_group,
        e.quantity, e.unique_value, e.event_time, e.source, e.event_id
    FROM month_events e
    JOIN charge_terms t
      ON t.customer_id = e.customer_id AND t.meter = e.meter
     AND e.usage_date BETWEEN t.segment_start AND t.segment_end
    JOIN meters m ON m.meter = e.meter
)
SELECT contract_id, segment_start, charge_id, price_group,
    CAST(CASE any_value(aggregation)
        WHEN 'SUM' THEN sum(quantity) FILTER (WHERE aggregation = 'SUM')
        WHEN 'COUNT' THEN count(*)
        WHEN 'MAX' THEN max(quantity) FILTER (WHERE aggregation = 'MAX')
        WHEN 'LATEST' THEN arg_max(quantity, (event_time, source, event_id))
            FILTER (WHERE aggregation = 'LATEST')
        WHEN 'UNIQUE_COUNT' THEN count(DISTINCT unique_value)
            FILTER (WHERE aggregation = 'UNIQUE_COUNT')
    END AS DECIMAL(38,12)) AS quantity,
    count(*) AS event_count
FROM matched
GROUP BY contract_id, segment_start, charge_id, price_group
"""

# The same totals from daily_usage, whose rows merge exactly: sums add, maxima take the
# larger, LATEST keeps the value of the latest (time, source, id), UNIQUE_COUNT unions the
# days' distinct values. Tens of thousands of daily rows stand for millions of events.
_SEGMENT_USAGE_FROM_DAYS = """
CREATE OR REPLACE TEMP TABLE segment_usage AS
WITH matched AS (
    SELECT t.contract_id, t.segment_start, t.charge_id, d.aggregation,
        price_group(t.group_by, d.dims) AS price_group,
        d.quantity, d.event_count, d.distinct_values,
        d.latest_event_time, d.latest_source, d.latest_event_id
    FROM month_days d
    JOIN charge_terms t
      ON t.customer_id = d.customer_id AND t.meter = d.meter
     AND d.usage_date BETWEEN t.segment_start AND t.segment_end
), uniques AS (
    SELECT contract_id, segment_start, charge_id, price_group,
        count(DISTINCT value) AS quantity
    FROM (
        SELECT contract_id, segment_start, charge_id, price_group,
            unnest(distinct_values) AS value
        FROM matched WHERE aggregation = 'UNIQUE_COUNT'
    )
    GROUP BY ALL
), merged AS (
    SELECT contract_id, segment_start, charge_id, price_group,
        any_value(aggregation) AS aggregation,
        sum(quantity) FILTER (WHERE aggregation IN ('SUM', 'COUNT')) AS additive,
        max(quantity) FILTER (WHERE aggregation = 'MAX') AS peak,
        arg_max(quantity, (latest_event_time, latest_source, latest_event_id))
            FILTER (WHERE aggregation = 'LATEST') AS latest,
        sum(event_count) AS event_count
    FROM matched
    GROUP BY ALL
)
SELECT m.contract_id, m.segment_start, m.charge_id, m.price_group,
    CAST(CASE m.aggregation
        WHEN 'SUM' THEN m.additive
        WHEN 'COUNT' THEN m.additive
        WHEN 'MAX' THEN m.peak
        WHEN 'LATEST' THEN m.latest
        WHEN 'UNIQUE_COUNT' THEN u.quantity
    END AS DECIMAL(38,12)) AS quantity,
    CAST(m.event_count AS BIGINT) AS event_count
FROM merged m
LEFT JOIN uniques u USING (contract_id, segment_start, charge_id, price_group)
"""

_ITEMS = """
CREATE OR REPLACE TEMP TABLE billing_items AS
WITH groups AS (
    -- Every charge in force gets a row: its groups with usage, or one empty group.
    SELECT t.*, coalesce(u.price_group, '{}') AS price_group,
        coalesce(u.quantity, CAST(0 AS DECIMAL(38,12))) AS quantity,
        coalesce(u.event_count, 0) AS event_count
    FROM charge_terms t
    LEFT JOIN segment_usage u USING (contract_id, segment_start, charge_id)
), prorated AS (
    SELECT *,
        item_id(contract_id, segment_start, charge_id, price_group) AS item_id,
        prorate(included_units, segment_days, $month_days) AS included,
        prorate(minimum_amount, segment_days, $month_days) AS minimum
    FROM groups
)
SELECT *, CAST(greatest(quantity - included, 0) AS DECIMAL(38,12)) AS billable_quantity
FROM prorated
"""

_PRICING_INPUTS = """
CREATE OR REPLACE TEMP VIEW items AS
SELECT item_id, model, currency, billable_quantity AS quantity, unit_amount, package_size,
    package_amount, free_units, rate, fixed_amount, CAST(free_events AS BIGINT) AS free_events,
    free_amount, min_per_event, max_per_event
FROM billing_items;
CREATE OR REPLACE TEMP VIEW tiers AS
SELECT i.item_id, tt.tier_no, tt.up_to, tt.unit_amount, tt.flat_amount, tt.rate
FROM billing_items i
JOIN term_tiers tt USING (contract_id, segment_start, charge_id)
WHERE i.model IN ('graduated', 'volume', 'graduated_percentage');
"""

# The percentage model prices each paid event: only its charges' events are read again,
# and only the columns pricing needs. An event's order key (source/event_id) breaks ties
# between an item's events at the same instant and nothing else, and reading event_id for
# every event costs more than the rest of rating: it is read only for events that share
# their item and event_time with another (_TIED_EVENTS); the others carry NULL, which
# orders them exactly as their distinct times do.
_EVENTS = """
CREATE OR REPLACE TEMP TABLE percentage_events AS
SELECT t.item_prefix || price_group(t.group_by, e.dims) AS item_id,
    e.event_time, CAST(NULL AS VARCHAR) AS event_order, e.quantity AS amount
FROM month_events e
JOIN percentage_terms t
  ON t.customer_id = e.customer_id AND t.meter = e.meter
 AND e.usage_date BETWEEN t.segment_start AND t.segment_end
"""

_PERCENTAGE_TERMS = """
CREATE OR REPLACE TEMP TABLE percentage_terms AS
SELECT contract_id, customer_id, meter, segment_start, segment_end, group_by,
    item_id(contract_id, segment_start, charge_id, '') AS item_prefix
FROM charge_terms WHERE model = 'percentage'
"""

# Grouped first by a hash of (item, time), a single integer: much cheaper than by the pair
# itself over millions of events, and a collision only costs a closer look.
_TIES = """
CREATE OR REPLACE TEMP TABLE percentage_ties AS
SELECT item_id, event_time FROM percentage_events
WHERE hash(item_id, event_time) IN (
    SELECT hash(item_id, event_time) AS h FROM percentage_events
    GROUP BY h HAVING count(*) > 1
)
GROUP BY ALL HAVING count(*) > 1
"""

# Tied events are read again with their order key, from their customers' events only.
_TIED_EVENTS = """
CREATE OR REPLACE TEMP TABLE percentage_events AS
SELECT * FROM percentage_events
ANTI JOIN percentage_ties USING (item_id, event_time)
UNION ALL
SELECT * FROM (
    SELECT t.item_prefix || price_group(t.group_by, e.dims) AS item_id,
        e.event_time, e.source || '/' || e.event_id AS event_order, e.quantity AS amount
    FROM month_events e
    JOIN percentage_terms t
      ON t.customer_id = e.customer_id AND t.meter = e.meter
     AND e.usage_date BETWEEN t.segment_start AND t.segment_end
    WHERE e.customer_id IN (
        SELECT DISTINCT t.customer_id FROM percentage_terms t
        JOIN (SELECT DISTINCT item_id FROM percentage_ties) x
          ON starts_with(x.item_id, t.item_prefix)
    )
)
SEMI JOIN percentage_ties USING (item_id, event_time)
"""

# A charge's minimum is a monthly figure: its prorated parts over the charge's segments
# are compared with the month's spend on it, and a shortfall is one line for the month,
# rounded on its own, once.
_SHORTFALLS = """
CREATE OR REPLACE TEMP TABLE shortfall_items AS
WITH segments AS (
    SELECT i.contract_id, i.segment_start, i.charge_id, any_value(i.minimum) AS minimum,
        sum(p.amount_precise) AS spent
    FROM billing_items i JOIN priced_items p USING (item_id)
    GROUP BY i.contract_id, i.segment_start, i.charge_id
)
SELECT contract_id || '|' || charge_id || '|minimum' AS item_id, contract_id, charge_id,
    min(segment_start) AS first_segment, max(segment_start) AS last_segment,
    CAST(sum(minimum) - sum(spent) AS DECIMAL(38,12)) AS shortfall
FROM segments
GROUP BY contract_id, charge_id
HAVING sum(spent) < sum(minimum)
"""

# A shortfall is already exact (12 decimals, in the charge's currency, which pricing
# checked): its line is only rounded, half-even to the minor unit, as pricing rounds.
_SHORTFALL_ROUNDED = """
CREATE OR REPLACE TEMP TABLE shortfall_rounded AS
SELECT s.item_id, mc_round_half_even(s.shortfall, c.minor_units) AS amount
FROM shortfall_items s
JOIN (SELECT DISTINCT contract_id, charge_id, currency FROM billing_items) i
  USING (contract_id, charge_id)
JOIN bu_currencies c ON c.code = i.currency
"""

_BILLABLE_USAGE = """
WITH priced AS (
    SELECT i.*, p.amount_precise, p.amount, p.breakdown
    FROM billing_items i JOIN priced_items p USING (item_id)
), last_segment AS (
    -- The true-up line carries the charge's terms as they stood at the month's end.
    SELECT DISTINCT ON (contract_id, charge_id) * FROM priced
    ORDER BY contract_id, charge_id, segment_start DESC
), spans AS (
    SELECT contract_id, charge_id, min(segment_start) AS month_start,
        max(segment_end) AS month_end, CAST(sum(segment_days) AS BIGINT) AS days
    FROM (SELECT DISTINCT contract_id, charge_id, segment_start, segment_end, segment_days
          FROM priced)
    GROUP BY ALL
)
SELECT $period AS period, contract_id, customer_id, segment_start, segment_end,
    segment_days, plan_id, charge_id, product_id, meter, model, price_group,
    'usage' AS kind, currency, quantity, included, billable_quantity, event_count,
    amount_precise, amount, breakdown
FROM priced
UNION ALL
SELECT $period, c.contract_id, c.customer_id, sp.month_start, sp.month_end,
    sp.days, c.plan_id, c.charge_id, c.product_id, c.meter, 'minimum' AS model,
    '{}' AS price_group, 'minimum_true_up' AS kind, c.currency,
    CAST(0 AS DECIMAL(38,12)), CAST(0 AS DECIMAL(38,12)), CAST(0 AS DECIMAL(38,12)), 0,
    s.shortfall, r.amount, NULL
FROM shortfall_items s
JOIN last_segment c USING (contract_id, charge_id)
JOIN spans sp USING (contract_id, charge_id)
JOIN shortfall_rounded r ON r.item_id = s.item_id
ORDER BY contract_id, charge_id, kind DESC, segment_start, price_group
"""


def _month_view(
    con: duckdb.DuckDBPyConnection,
    name: str,
    files: Sequence[Path],
    empty: str,
    month_start: date,
    month_end: date,
) -> None:
    """View ``name``: the month's rows of some Parquet files, or of none (``empty``, a
    typed empty SELECT). A view, not a copy: the rows are read where they lie. A view takes
    no bound parameters; the bounds are date objects written as ISO dates."""
    source = f"{name}_source"
    if files:
        con.read_parquet([str(p) for p in files]).create_view(source, replace=True)
    else:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {source} AS {empty}")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {source} "
        f"WHERE usage_date BETWEEN DATE '{month_start.isoformat()}' "
        f"AND DATE '{month_end.isoformat()}'"
    )


def billable_usage(
    con: duckdb.DuckDBPyConnection,
    usage_event_files: Sequence[Path],
    meters: pa.Table,
    period: str,
    month_start: date,
    month_end: date,
    daily_usage_files: Sequence[Path] | None = None,
) -> pa.Table:
    """Price the month's usage under ``charge_terms`` and ``term_tiers`` (see rating.terms).

    With ``daily_usage_files`` the usage totals come from daily_usage (much smaller, and
    exact: its rows merge), and events are read only for percentage charges' per-event
    fees; without, everything is worked out from the events.
    """
    con.execute(_PRORATE)
    con.execute(_ITEM_ID)
    con.register("meters", meters)
    # A month with contracts but nothing landed still bills their fees and minimums.
    _month_view(con, "month_events", usage_event_files, _NO_EVENTS, month_start, month_end)
    con.execute(_PRICE_GROUP)
    if daily_usage_files is None:
        con.execute(_SEGMENT_USAGE)
    else:
        _month_view(con, "month_days", daily_usage_files, _NO_DAYS, month_start, month_end)
        con.execute(_SEGMENT_USAGE_FROM_DAYS)
    con.execute(_ITEMS, {"month_days": (month_end - month_start).days + 1})
    con.execute(_PRICING_INPUTS)
    con.execute(_PERCENTAGE_TERMS)
    con.execute(_EVENTS)
    con.execute(_TIES)
    tied = con.execute("SELECT count(*) FROM percentage_ties").fetchall()[0][0]
    if tied:
        con.execute(_TIED_EVENTS)
    con.register("priced_items", price_items(con, "items", "tiers", "percentage_events"))
    con.execute(_SHORTFALLS)
    install_rounding(con)
    con.register("bu_currencies", currency_table())
    con.execute(_SHORTFALL_ROUNDED)
    return con.sql(_BILLABLE_USAGE, params={"period": period}).to_arrow_table()
