"""Revenue schedule: what each invoice line earns in a month, and what is still deferred.

- Recurring fees (``recurring``, ``recurring_adjustment``) are recognised ratably by day over
  their service period. Each month's figure is the difference of cumulative amounts, each
  rounded once (half-even, in the currency's minor unit) from exact integers: cumulative
  through month m = round(amount × days served through m ÷ days in the period). So a
  schedule never drifts, and its months always sum exactly to the line.
- Usage, minimum and commitment true-ups are earned in the month the usage was consumed
  (the line's period), though invoiced on the first day of the next month.
- Credits (credit memos) reduce revenue in the month they are granted for.
- Prepaid credit is not revenue when sold or drawn (it pays for lines that are); what
  expires unused is breakage, earned in the month it expires.

A month's schedule holds every obligation with something in that month or still deferred
at its end, from all invoice lines issued up to it.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pyarrow as pa

from rating.currency import currency_table

DECIMAL = pa.decimal128(38, 12)

REVENUE_SCHEMA = pa.schema(
    [
        ("period", pa.string()),
        ("entity_id", pa.string()),
        ("customer_id", pa.string()),
        ("contract_id", pa.string()),
        ("invoice_id", pa.string()),
        ("line_id", pa.string()),
        ("invoice_period", pa.string()),
        ("invoice_date", pa.date32()),
        ("kind", pa.string()),
        ("pattern", pa.string()),
        ("product_id", pa.string()),
        ("currency", pa.string()),
        ("service_start", pa.date32()),
        ("service_end", pa.date32()),
        ("amount", DECIMAL),
        ("recognized_before", DECIMAL),
        ("recognized", DECIMAL),
        ("recognized_to_date", DECIMAL),
        ("deferred_balance", DECIMAL),
    ]
)

# n ÷ d (integers, d > 0) rounded half-even, for either sign of n.
_DIVIDE = """
CREATE OR REPLACE TEMP MACRO rev_div_half_even(n, d) AS (
    WITH parts AS (SELECT abs(n) // d AS q, abs(n) % d AS r, sign(n) AS s)
    SELECT s * (q + CASE WHEN 2 * r > d OR (2 * r = d AND q % 2 = 1) THEN 1 ELSE 0 END)
    FROM parts
);
-- Minor units back to a DECIMAL(38,12) amount, by multiplying: a DECIMAL divided by a
-- DECIMAL is a DOUBLE in DuckDB.
CREATE OR REPLACE TEMP MACRO rev_from_minor(n, pow10_rest) AS
    CAST(CAST(n * pow10_rest AS DECIMAL(38,0)) * CAST(0.000000000001 AS DECIMAL(13,12))
         AS DECIMAL(38,12));
"""

_SCHEDULE = """
WITH lines AS (
    SELECT l.*, c.pow10_rest,
        CASE WHEN l.kind IN ('recurring', 'recurring_adjustment') THEN 'ratable'
             ELSE 'point' END AS pattern,
        CAST(l.amount * c.pow10 AS HUGEINT) AS amount_minor, c.pow10
    FROM invoice_history l
    JOIN rev_currencies c ON c.code = l.currency
    WHERE l.kind NOT IN ('prepaid_drawdown', 'prepaid_purchase') AND l.period <= $period
), ratable AS (
    SELECT *,
        CAST(service_end - service_start + 1 AS HUGEINT) AS total_days,
        CAST(greatest(least(service_end, CAST($month_end AS DATE)) - service_start + 1, 0)
             AS HUGEINT) AS days_through,
        CAST(greatest(least(service_end, CAST($month_start AS DATE) - 1) - service_start + 1, 0)
             AS HUGEINT) AS days_before
    FROM lines
    WHERE pattern = 'ratable' AND service_end >= $month_start
), ratable_amounts AS (
    SELECT *,
        rev_div_half_even(amount_minor * days_through, total_days) AS through_minor,
        rev_div_half_even(amount_minor * days_before, total_days) AS before_minor
    FROM ratable
), scheduled AS (
    SELECT period AS invoice_period, entity_id, customer_id, contract_id, invoice_id, line_id,
        invoice_date, kind, pattern, product_id, currency, service_start, service_end, amount,
        rev_from_minor(before_minor, pow10_rest) AS recognized_before,
        rev_from_minor(through_minor, pow10_rest) AS recognized_to_date
    FROM ratable_amounts
    UNION ALL
    SELECT period, entity_id, customer_id, contract_id, invoice_id, line_id, invoice_date,
        kind, pattern, product_id, currency, service_start, service_end, amount,
        CAST(0 AS DECIMAL(38,12)), amount
    FROM lines
    WHERE pattern = 'point' AND period = $period
    UNION ALL
    SELECT period, entity_id, customer_id, contract_id, NULL, 'BRK-' || contract_id || '-'
            || period, NULL, 'prepaid_breakage', 'point', NULL, currency,
        CAST($month_start AS DATE), CAST($month_end AS DATE), expired,
        CAST(0 AS DECIMAL(38,12)), expired
    FROM prepaid_balances
    WHERE expired > 0
)
SELECT $period AS period, entity_id, customer_id, contract_id, invoice_id, line_id,
    invoice_period, invoice_date, kind, pattern, product_id, currency, service_start,
    service_end, amount, recognized_before,
    CAST(recognized_to_date - recognized_before AS DECIMAL(38,12)) AS recognized,
    recognized_to_date,
    CAST(amount - recognized_to_date AS DECIMAL(38,12)) AS deferred_balance
FROM scheduled
WHERE recognized_to_date <> recognized_before OR amount <> recognized_to_date
ORDER BY entity_id, contract_id, line_id
"""


def revenue_schedule(
    con: duckdb.DuckDBPyConnection,
    invoice_history: pa.Table,
    prepaid_balances: pa.Table,
    period: str,
    month_start: date,
    month_end: date,
) -> pa.Table:
    """The month's revenue schedule from every invoice line issued up to the month
    (``invoice_history``: invoice_lines rows) and the month's prepaid balances."""
    con.execute(_DIVIDE)
    con.register("rev_currencies", currency_table())
    con.register("invoice_history", invoice_history)
    con.register("prepaid_balances", prepaid_balances)
    table = con.sql(
        _SCHEDULE,
        params={"period": period, "month_start": month_start, "month_end": month_end},
    ).to_arrow_table()
    return table.cast(REVENUE_SCHEMA)
