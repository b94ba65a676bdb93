"""Recurring fees: billed in advance per billing period, prorated by day, for every contract
at once.

A charge's billing periods are calendar months (``calendar`` alignment), months from the
contract's anniversary (``anniversary``), or years from the anniversary (yearly fees, always).
A co-termed contract takes the anniversary of the contract it is co-termed with.

A period is billed in the close of the month it starts in (or the contract starts in), on an
invoice dated that day, for the whole period under the terms known on that day: the fee ×
quantity × days of service in the period ÷ days in the period, so a first or last partial
period (a mid-month start, a stated end date) is prorated by day. A change made later inside
a period already billed — a quantity change, a new price, a plan change, a cancellation —
is billed on the day it takes effect, as the difference it makes to the rest of the period
(an upgrade charges the remainder, a cancellation credits it). Billed by day, a period's
lines always sum to exactly what its days cost under the terms that held on each day.

Each close looks at the terms "known" at a cutoff day: a change is known from its effective
date on; a contract's stated end date is known from the start. A line is the difference
between the period's cost at one cutoff and at the one before.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pyarrow as pa

# x × days / divisor at 12 places, half-even, for either sign, in integers.
_PRORATE = """
CREATE OR REPLACE TEMP MACRO rc_prorate(x, days, divisor) AS (
    WITH parts AS (
        SELECT CAST(abs(x) * 1000000000000 AS HUGEINT) * days AS n,
            CAST(divisor AS HUGEINT) AS d, sign(x) AS s
    ), split AS (
        SELECT n // d AS q, n % d AS r, d, s FROM parts
    )
    SELECT CAST(
        CAST(s * (q + CASE WHEN 2 * r > d OR (2 * r = d AND q % 2 = 1) THEN 1 ELSE 0 END)
             AS DECIMAL(38,0)) * CAST(0.000000000001 AS DECIMAL(13,12))
        AS DECIMAL(38,12))
    FROM split
)
"""

# The billing period that holds day d: calendar months, or months or years counted from
# the anniversary a. DuckDB adds months as a calendar does (Jan 31 + 1 month = Feb 28),
# and each period start is counted from the anniversary, never from the last period, so a
# 31st stays the 31st wherever the month has one.
_PERIOD_MACROS = """
CREATE OR REPLACE TEMP MACRO rc_months_from(a, d) AS
    ((year(d) - year(a)) * 12 + month(d) - month(a))
    - CASE WHEN CAST(a + to_months(CAST((year(d) - year(a)) * 12 + month(d) - month(a)
                                         AS INTEGER)) AS DATE) > d
           THEN 1 ELSE 0 END;
CREATE OR REPLACE TEMP MACRO rc_years_from(a, d) AS
    (year(d) - year(a))
    - CASE WHEN CAST(a + to_years(CAST(year(d) - year(a) AS INTEGER)) AS DATE) > d
           THEN 1 ELSE 0 END;
CREATE OR REPLACE TEMP MACRO rc_period_start(interval_, alignment, a, d) AS
    CASE
        WHEN interval_ = 'year'
            THEN CAST(a + to_years(CAST(rc_years_from(a, d) AS INTEGER)) AS DATE)
        WHEN alignment = 'anniversary'
            THEN CAST(a + to_months(CAST(rc_months_from(a, d) AS INTEGER)) AS DATE)
        ELSE CAST(date_trunc('month', d) AS DATE)
    END;
CREATE OR REPLACE TEMP MACRO rc_period_end(interval_, alignment, a, d) AS
    CASE
        WHEN interval_ = 'year'
            THEN CAST(a + to_years(CAST(rc_years_from(a, d) + 1 AS INTEGER)) AS DATE) - 1
        WHEN alignment = 'anniversary'
            THEN CAST(a + to_months(CAST(rc_months_from(a, d) + 1 AS INTEGER)) AS DATE) - 1
        ELSE last_day(d)
    END;
"""

_RECURRING = """
CREATE OR REPLACE TEMP TABLE recurring_lines AS
WITH days AS (
    SELECT CAST(unnest(generate_series(CAST($month_start AS TIMESTAMP),
                                       CAST($month_end AS TIMESTAMP), INTERVAL 1 DAY)) AS DATE)
        AS d
), plans_held AS (
    SELECT contract_id, plan_id FROM contracts
    UNION
    SELECT contract_id, plan_id FROM term_changes WHERE type = 'plan_change'
), intervals AS (
    SELECT DISTINCT ph.contract_id, pr.interval
    FROM plans_held ph JOIN plan_recurring pr USING (plan_id)
), changes AS (
    -- Days on which a recurring fee's terms change, each known from that day on.
    SELECT contract_id, effective_date AS day FROM term_changes
    WHERE type IN ('plan_change', 'quantity_change')
    UNION
    SELECT contract_id, effective_date FROM price_overrides WHERE field = 'amount'
    UNION
    SELECT contract_id, cancelled_from FROM contracts WHERE cancelled_from IS NOT NULL
), periods AS (
    SELECT DISTINCT i.contract_id, i.interval,
        rc_period_start(i.interval, c.billing_alignment, c.anniversary, days.d) AS period_start,
        rc_period_end(i.interval, c.billing_alignment, c.anniversary, days.d) AS period_end,
        c.start_date, c.end_date
    FROM intervals i JOIN contracts c USING (contract_id) CROSS JOIN days
), billed AS (
    -- A period is first billed on the day its service starts; a period billed before this
    -- month is looked at again only if a change this month falls inside it.
    SELECT *, greatest(period_start, start_date) AS bill_from,
        least(period_end, coalesce(end_date, period_end)) AS bill_to,
        CAST(period_end - period_start + 1 AS BIGINT) AS period_days
    FROM periods
    WHERE greatest(period_start, start_date) <= least(period_end, coalesce(end_date, period_end))
      AND greatest(period_start, start_date) <= $month_end
), cutoffs AS (
    SELECT contract_id, interval, period_start, bill_from AS cutoff FROM billed
    WHERE bill_from >= $month_start
    UNION
    SELECT contract_id, interval, period_start, CAST($month_start AS DATE) - 1 FROM billed
    WHERE bill_from < $month_start
    UNION
    SELECT b.contract_id, b.interval, b.period_start, ch.day
    FROM billed b JOIN changes ch USING (contract_id)
    WHERE ch.day > b.bill_from AND ch.day <= b.bill_to
      AND ch.day BETWEEN $month_start AND $month_end
), looked_at AS (
    SELECT b.*, k.cutoff FROM billed b JOIN cutoffs k USING (contract_id, interval, period_start)
    WHERE b.bill_from >= $month_start
       OR EXISTS (SELECT 1 FROM cutoffs k2
                  WHERE k2.contract_id = b.contract_id AND k2.interval = b.interval
                    AND k2.period_start = b.period_start AND k2.cutoff >= $month_start)
), bounds AS (
    -- Where the terms may change inside the period, as known at the cutoff.
    SELECT l.contract_id, l.interval, l.period_start, l.cutoff, l.bill_from AS piece_start
    FROM looked_at l
    UNION
    SELECT l.contract_id, l.interval, l.period_start, l.cutoff, ch.day
    FROM looked_at l JOIN changes ch USING (contract_id)
    WHERE ch.day > l.bill_from AND ch.day <= l.bill_to AND ch.day <= l.cutoff
), pieces AS (
    SELECT bd.contract_id, bd.interval, bd.period_start, bd.cutoff, bd.piece_start,
        least(
            coalesce(lead(bd.piece_start) OVER (
                PARTITION BY bd.contract_id, bd.interval, bd.period_start, bd.cutoff
                ORDER BY bd.piece_start) - 1, l.bill_to),
            CASE WHEN c.cancelled_from <= bd.cutoff THEN c.cancelled_from - 1
                 ELSE l.bill_to END
        ) AS piece_end
    FROM bounds bd
    JOIN looked_at l USING (contract_id, interval, period_start, cutoff)
    JOIN contracts c USING (contract_id)
), plan_in_force AS (
    SELECT p.*, coalesce(pc.plan_id, c.plan_id) AS plan_id,
        coalesce(pc.effective_date, DATE '0001-01-01') AS plan_since
    FROM pieces p
    JOIN contracts c USING (contract_id)
    ASOF LEFT JOIN (SELECT * FROM term_changes WHERE type = 'plan_change') pc
        ON p.contract_id = pc.contract_id AND p.piece_start >= pc.effective_date
    WHERE p.piece_start <= p.piece_end
), charged AS (
    SELECT f.*, pr.charge_id, pr.product_id, pr.currency, pr.amount AS plan_amount,
        pr.quantity AS plan_quantity
    FROM plan_in_force f
    JOIN plan_recurring pr ON pr.plan_id = f.plan_id AND pr.interval = f.interval
), quantities AS (
    SELECT ch.*, q.effective_date AS quantity_since, q.quantity AS changed_quantity
    FROM charged ch
    ASOF LEFT JOIN (SELECT * FROM term_changes WHERE type = 'quantity_change') q
        ON ch.contract_id = q.contract_id AND ch.charge_id = q.charge_id
       AND ch.piece_start >= q.effective_date
), priced AS (
    -- Amendments made under an earlier plan lapse with it, as for usage charges.
    SELECT qs.*,
        CASE WHEN qs.quantity_since >= qs.plan_since THEN qs.changed_quantity
             ELSE qs.plan_quantity END AS quantity,
        CASE WHEN o.effective_date >= qs.plan_since THEN o.value
             ELSE qs.plan_amount END AS amount,
        CAST(qs.piece_end - qs.piece_start + 1 AS BIGINT) AS days
    FROM quantities qs
    ASOF LEFT JOIN (SELECT * FROM price_overrides WHERE field = 'amount') o
        ON qs.contract_id = o.contract_id AND qs.charge_id = o.charge_id
       AND qs.piece_start >= o.effective_date
), costs AS (
    SELECT contract_id, interval, period_start, cutoff, plan_id, charge_id,
        any_value(product_id) AS product_id, any_value(currency) AS currency,
        CAST(sum(CAST(amount * quantity AS DECIMAL(38,12)) * days) AS DECIMAL(38,12))
            AS cost_days,
        CAST(sum(quantity * days) AS DECIMAL(38,12)) AS quantity_days
    FROM priced
    GROUP BY ALL
), grid AS (
    -- Every charge seen at any cutoff of its period, at every cutoff (absent: no cost).
    SELECT k.contract_id, k.interval, k.period_start, k.cutoff, ch.plan_id, ch.charge_id,
        ch.product_id, ch.currency
    FROM (SELECT DISTINCT contract_id, interval, period_start, cutoff FROM looked_at) k
    JOIN (SELECT DISTINCT contract_id, interval, period_start, plan_id, charge_id,
                 product_id, currency FROM costs) ch
      USING (contract_id, interval, period_start)
), deltas AS (
    SELECT g.*, coalesce(c.cost_days, 0) AS cost_days,
        coalesce(c.cost_days, 0) - coalesce(lag(coalesce(c.cost_days, 0)) OVER w, 0)
            AS cost_delta,
        coalesce(c.quantity_days, 0) - coalesce(lag(coalesce(c.quantity_days, 0)) OVER w, 0)
            AS quantity_delta,
        row_number() OVER w AS nth
    FROM grid g
    LEFT JOIN costs c USING (contract_id, interval, period_start, cutoff, plan_id, charge_id)
    WINDOW w AS (PARTITION BY g.contract_id, g.interval, g.period_start, g.plan_id,
                 g.charge_id ORDER BY g.cutoff)
)
SELECT d.contract_id, c.customer_id, d.plan_id, d.charge_id, d.product_id, d.currency,
    d.interval, d.period_start, l.period_end, l.period_days,
    d.cutoff AS invoice_date,
    CASE WHEN d.cutoff = l.bill_from THEN 'recurring' ELSE 'recurring_adjustment' END AS kind,
    greatest(d.cutoff, l.bill_from) AS service_start, l.bill_to AS service_end,
    rc_prorate(d.quantity_delta, 1, l.period_days) AS quantity,
    rc_prorate(d.cost_delta, 1, l.period_days) AS amount_precise
FROM deltas d
JOIN looked_at l USING (contract_id, interval, period_start, cutoff)
JOIN contracts c USING (contract_id)
WHERE d.cutoff >= $month_start AND d.cost_delta <> 0
"""


def recurring_lines(con: duckdb.DuckDBPyConnection, month_start: date, month_end: date) -> pa.Table:
    """The month's recurring fee lines, from the reference tables registered on ``con`` by
    ``rating.terms.terms_in_force`` (contracts, term_changes, price_overrides,
    plan_recurring). Also leaves them in temp table ``recurring_lines``."""
    con.execute(_PRORATE)
    con.execute(_PERIOD_MACROS)
    con.execute(_RECURRING, {"month_start": month_start, "month_end": month_end})
    return con.sql(
        "SELECT * FROM recurring_lines ORDER BY contract_id, invoice_date, charge_id, "
        "period_start, plan_id"
    ).to_arrow_table()
