"""Journal lines: a month's double entries per legal entity, balanced to the cent in the
transaction and the functional currency of every journal.

A journal is entity × accounting period × currency × category:

- ``billing``: every invoice and credit memo dated in the period. Each line books against
  its role — usage and true-ups to revenue by product family, recurring fees to deferred
  revenue (billed in advance), credits against revenue, prepaid credit sold and drawn
  to and from the contract liability — and each document's total to the receivable.
- ``usage_accrual``: on the period's last day, the month's usage, true-ups and credits,
  whose documents are dated the first day of the next month: unbilled receivable against
  revenue. ``accrual_reversal`` undoes the previous month's accrual on the period's first
  day, at the rate it was booked at, the day its invoice is booked.
- ``revenue_release``: what the revenue schedule recognises of recurring fees this month,
  from deferred revenue to revenue; in the functional currency each month's release is the
  difference of cumulative amounts converted at the invoice's rate, so a fully recognised
  line leaves nothing deferred.
- ``prepaid_breakage``: prepaid credit that expired unused, from the contract liability
  to breakage revenue.

FX: each line is converted to the entity's functional currency at the ``daily`` rate of its
rate date (the latest quoted on or before it) — the document date for billing (for a usage
invoice or credit memo, the last day of its service month, when its revenue was accrued),
the month's last day for accruals and breakage, and for a deferred revenue release the
invoice's own date: deferred revenue is not remeasured. Rates are quoted per unit of one
base currency; cross rates are worked out through it, to 12 decimal places, half-even.
Each line is rounded once to the functional minor unit; what the rounding leaves in a
journal goes to the rounding account, never dropped.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pyarrow as pa

from rating.currency import currency_table, install_rounding

DECIMAL = pa.decimal128(38, 12)

JOURNAL_SCHEMA = pa.schema(
    [
        ("accounting_date", pa.date32()),
        ("period", pa.string()),
        ("entity_id", pa.string()),
        ("erp_subsidiary", pa.string()),
        ("journal_id", pa.string()),
        ("category", pa.string()),
        ("line_no", pa.int64()),
        ("account", pa.string()),
        ("account_role", pa.string()),
        ("debit", DECIMAL),
        ("credit", DECIMAL),
        ("currency", pa.string()),
        ("functional_currency", pa.string()),
        ("fx_rate", DECIMAL),
        ("fx_rate_date", pa.date32()),
        ("fx_quote_date", pa.date32()),
        ("functional_debit", DECIMAL),
        ("functional_credit", DECIMAL),
        ("product_id", pa.string()),
        ("product_family", pa.string()),
        ("business_unit", pa.string()),
        ("department", pa.string()),
        ("customer_id", pa.string()),
        ("contract_id", pa.string()),
        ("invoice_id", pa.string()),
        ("line_id", pa.string()),
        ("service_period", pa.string()),
        ("memo", pa.string()),
        ("source_ref", pa.string()),
        ("correlation_id", pa.string()),
    ]
)

ACCRUED_KINDS = (
    "usage",
    "minimum_true_up",
    "commitment_true_up",
    "prior_period_adjustment",
    "credit",
)

_MACROS = """
-- The rate date of a document's lines: a usage invoice or credit memo, dated the first day
-- after its service month, is converted at the rate its revenue was accrued at (that
-- month's last day), so its booking and the accrual's reversal cancel in the functional
-- currency too; any other document at its own date.
-- What a month-end accrual books against its revenue, per document: an amount the
-- customer will be invoiced is unbilled receivable; a credit not yet issued (a credit memo,
-- or a document that nets to a credit) is owed to the customer, a liability
-- (customer_credits), never netted inside the receivable.
CREATE OR REPLACE TEMP MACRO je_accrued_role(total) AS
    CASE WHEN total < 0 THEN 'customer_credits' ELSE 'unbilled_receivable' END;
CREATE OR REPLACE TEMP MACRO je_rate_date(invoice_id, invoice_date) AS
    CASE WHEN invoice_id LIKE '%-U' OR invoice_id LIKE 'CM-%' THEN invoice_date - 1
         ELSE invoice_date END;
-- a ÷ b for positive DECIMAL(38,12) rates, to 12 places, half-even, in integers.
CREATE OR REPLACE TEMP MACRO je_divide(a, b) AS (
    WITH parts AS (
        SELECT CAST(a * 1000000000000 AS HUGEINT) * CAST(1000000000000 AS HUGEINT) AS n,
            CAST(b * 1000000000000 AS HUGEINT) AS d
    ), split AS (SELECT n // d AS q, n % d AS r, d FROM parts)
    SELECT CAST(CAST(q + CASE WHEN 2 * r > d OR (2 * r = d AND q % 2 = 1) THEN 1 ELSE 0 END
                     AS DECIMAL(38,0)) * CAST(0.000000000001 AS DECIMAL(13,12))
                AS DECIMAL(38,12))
    FROM split
);
"""

_POSTINGS = """
CREATE OR REPLACE TEMP TABLE je_postings AS
WITH billing AS (
    SELECT * FROM je_invoice_lines
    WHERE invoice_date BETWEEN $month_start AND $month_end AND amount <> 0
), accrued AS (
    SELECT * FROM je_invoice_lines
    WHERE period = $period AND kind IN {accrued} AND amount <> 0
), reversed AS (
    SELECT * FROM je_invoice_lines
    WHERE period = $previous AND kind IN {accrued} AND amount <> 0
), released AS (
    SELECT * FROM je_schedule WHERE pattern = 'ratable' AND recognized <> 0
), broken AS (
    SELECT * FROM je_schedule WHERE kind = 'prepaid_breakage' AND recognized <> 0
)
SELECT 'billing' AS category, invoice_date AS accounting_date, entity_id, currency,
    CASE WHEN kind IN ('recurring', 'recurring_adjustment') THEN 'deferred_revenue'
         WHEN kind IN ('prepaid_drawdown', 'prepaid_purchase') THEN 'contract_liability'
         ELSE 'revenue' END AS role,
    product_id, CAST(-amount AS DECIMAL(38,12)) AS signed, je_rate_date(invoice_id, invoice_date)
        AS rate_date,
    customer_id, contract_id, invoice_id, line_id, period AS service_period, 1 AS ord,
    invoice_id || ': ' || description AS memo, line_id AS source_ref
FROM billing
UNION ALL
SELECT 'billing', invoice_date, entity_id, currency, 'receivable', NULL,
    CAST(sum(amount) AS DECIMAL(38,12)), je_rate_date(invoice_id, invoice_date), customer_id,
    contract_id,
    invoice_id, NULL, period, 0,
    CASE WHEN any_value(document_type) = 'credit_memo' THEN 'Credit memo ' ELSE 'Invoice ' END
        || invoice_id || ' to ' || customer_id, invoice_id
FROM billing
GROUP BY invoice_date, entity_id, currency, customer_id, contract_id, invoice_id, period
HAVING sum(amount) <> 0
UNION ALL
SELECT 'usage_accrual', CAST($month_end AS DATE), entity_id, currency, 'revenue', product_id,
    CAST(-amount AS DECIMAL(38,12)), CAST($month_end AS DATE), customer_id, contract_id,
    invoice_id, line_id, period, 1,
    'Accrued, invoiced ' || strftime(invoice_date, '%Y-%m-%d') || ' on ' || invoice_id || ': '
        || description, line_id
FROM accrued
UNION ALL
SELECT 'usage_accrual', CAST($month_end AS DATE), entity_id, currency,
    je_accrued_role(sum(amount)), NULL, CAST(sum(amount) AS DECIMAL(38,12)),
    CAST($month_end AS DATE), customer_id, contract_id, invoice_id, NULL, period, 0,
    CASE WHEN je_accrued_role(sum(amount)) = 'customer_credits'
         THEN 'Owed to ' || customer_id || ' for ' || $period || ', credit memo ' || invoice_id
         ELSE 'Unbilled ' || $period || ' usage, invoice ' || invoice_id END, invoice_id
FROM accrued
GROUP BY entity_id, currency, customer_id, contract_id, invoice_id, period
HAVING sum(amount) <> 0
UNION ALL
SELECT 'accrual_reversal', CAST($month_start AS DATE), entity_id, currency, 'revenue',
    product_id, CAST(amount AS DECIMAL(38,12)), CAST($month_start AS DATE) - 1, customer_id,
    contract_id, invoice_id, line_id, period, 1,
    'Reversal of the ' || period || ' accrual: ' || description, line_id
FROM reversed
UNION ALL
SELECT 'accrual_reversal', CAST($month_start AS DATE), entity_id, currency,
    je_accrued_role(sum(amount)), NULL, CAST(-sum(amount) AS DECIMAL(38,12)),
    CAST($month_start AS DATE) - 1, customer_id, contract_id, invoice_id, NULL, period, 0,
    CASE WHEN je_accrued_role(sum(amount)) = 'customer_credits'
         THEN 'Reversal of the ' || period || ' credit owed, credit memo ' || invoice_id
         ELSE 'Reversal of unbilled ' || period || ' usage, invoice ' || invoice_id END,
    invoice_id
FROM reversed
GROUP BY entity_id, currency, customer_id, contract_id, invoice_id, period
HAVING sum(amount) <> 0
UNION ALL
SELECT 'revenue_release', CAST($month_end AS DATE), entity_id, currency, 'deferred_revenue',
    product_id, recognized, invoice_date, customer_id, contract_id, invoice_id, line_id,
    invoice_period, 0,
    'Deferred revenue released for ' || $period || ', ' || invoice_id, line_id
FROM released
UNION ALL
SELECT 'revenue_release', CAST($month_end AS DATE), entity_id, currency, 'revenue',
    product_id, CAST(-recognized AS DECIMAL(38,12)), invoice_date, customer_id, contract_id,
    invoice_id, line_id, invoice_period, 1,
    'Revenue recognised for ' || $period || ', ' || invoice_id, line_id
FROM released
UNION ALL
SELECT 'prepaid_breakage', CAST($month_end AS DATE), entity_id, currency,
    'contract_liability', NULL, recognized, CAST($month_end AS DATE), customer_id,
    contract_id, NULL, line_id, period, 0,
    'Prepaid credit expired unused, contract ' || contract_id, line_id
FROM broken
UNION ALL
SELECT 'prepaid_breakage', CAST($month_end AS DATE), entity_id, currency, 'breakage', NULL,
    CAST(-recognized AS DECIMAL(38,12)), CAST($month_end AS DATE), customer_id, contract_id,
    NULL, line_id, period, 1,
    'Breakage revenue, contract ' || contract_id, line_id
FROM broken
"""

# Units of each currency per unit of the base currency, per day quoted (the base is 1).
_UNITS = """
CREATE OR REPLACE TEMP TABLE je_units AS
SELECT date, to_currency AS currency, rate AS units FROM je_fx
WHERE rate_type = 'daily' AND from_currency = $base
"""

_CONVERTED = """
CREATE OR REPLACE TEMP TABLE je_converted AS
WITH dated AS (
    SELECT p.*, e.functional_currency, e.erp_subsidiary,
        'JE-' || p.entity_id || '-' || $period || '-' || p.currency || '-' || p.category
            AS journal_id
    FROM je_postings p JOIN je_entities e USING (entity_id)
), quoted_from AS (
    SELECT d.*, u.units AS from_units, u.date AS from_date
    FROM dated d
    ASOF LEFT JOIN je_units u ON u.currency = d.currency AND d.rate_date >= u.date
), quoted AS (
    SELECT q.*, u.units AS to_units, u.date AS to_date
    FROM quoted_from q
    ASOF LEFT JOIN je_units u ON u.currency = q.functional_currency AND q.rate_date >= u.date
), legs AS (
    -- The quote a rate rests on: the older of its two legs' (the base leg needs none).
    -- A rate is missing unless that quote is at most $max_age days older than the day
    -- asked for (0 unless METERCLOSE_FX_FALLBACK_MAX_AGE_DAYS allows a fallback).
    SELECT *,
        CASE WHEN currency = functional_currency THEN NULL
             WHEN (currency <> $base AND from_date IS NULL)
               OR (functional_currency <> $base AND to_date IS NULL) THEN NULL
             ELSE least(CASE WHEN currency = $base THEN rate_date ELSE from_date END,
                        CASE WHEN functional_currency = $base THEN rate_date ELSE to_date END)
        END AS quote_date
    FROM quoted
), rated AS (
    SELECT *,
        CASE WHEN currency = functional_currency THEN CAST(1 AS DECIMAL(38,12))
             WHEN quote_date IS NULL OR rate_date - quote_date > $max_age THEN NULL
             ELSE je_divide(
                 CASE WHEN functional_currency = $base THEN CAST(1 AS DECIMAL(38,12))
                      ELSE to_units END,
                 CASE WHEN currency = $base THEN CAST(1 AS DECIMAL(38,12))
                      ELSE from_units END)
        END AS fx_rate
    FROM legs
)
SELECT r.* EXCLUDE (from_units, to_units, from_date, to_date, quote_date),
    CASE WHEN r.fx_rate IS NULL THEN NULL ELSE r.rate_date END AS fx_rate_date,
    CASE WHEN r.fx_rate IS NULL THEN NULL ELSE r.quote_date END AS fx_quote_date,
    -- A release is the difference of cumulative amounts, each converted and rounded once
    -- at the invoice's rate: over a schedule's months the releases add up to what the
    -- invoice deferred, to the cent, in the functional currency too.
    CASE WHEN s.line_id IS NULL
         THEN mc_round_half_even(r.signed * r.fx_rate, c.minor_units)
         ELSE CAST((mc_round_half_even(s.recognized_to_date * r.fx_rate, c.minor_units)
                    - mc_round_half_even(s.recognized_before * r.fx_rate, c.minor_units))
                   * CASE WHEN r.role = 'deferred_revenue' THEN 1 ELSE -1 END
                   AS DECIMAL(38,12))
    END AS functional_signed
FROM rated r
JOIN je_currencies c ON c.code = r.functional_currency
LEFT JOIN je_schedule s
  ON r.category = 'revenue_release' AND s.pattern = 'ratable' AND s.line_id = r.line_id
"""

_LINES = """
WITH rounding AS (
    -- What rounding each line once leaves in a journal, to the rounding account.
    SELECT any_value(category) AS category, max(accounting_date) AS accounting_date,
        entity_id, currency, 'rounding' AS role, NULL AS product_id,
        CAST(0 AS DECIMAL(38,12)) AS signed, NULL AS rate_date, NULL AS customer_id,
        NULL AS contract_id, NULL AS invoice_id, NULL AS line_id,
        $period AS service_period, 9 AS ord,
        'FX rounding, journal ' || journal_id AS memo, journal_id AS source_ref,
        any_value(functional_currency) AS functional_currency,
        any_value(erp_subsidiary) AS erp_subsidiary, journal_id,
        CAST(NULL AS DECIMAL(38,12)) AS fx_rate, CAST(NULL AS DATE) AS fx_rate_date,
        CAST(-sum(functional_signed) AS DECIMAL(38,12)) AS functional_signed
    FROM je_converted
    GROUP BY entity_id, currency, journal_id
    HAVING sum(functional_signed) <> 0 AND count(functional_signed) = count(*)
), lines AS (
    SELECT * FROM je_converted
    UNION ALL BY NAME SELECT * FROM rounding
), mapped AS (
    SELECT l.*, pr.product_family, pr.business_unit, pr.department,
        a.account
    FROM lines l
    LEFT JOIN je_products pr ON pr.product_id = l.product_id
    LEFT JOIN je_accounts a ON a.entity_id = l.entity_id AND a.role = l.role
        AND a.product_family IS NOT DISTINCT FROM
            CASE WHEN l.role = 'revenue' THEN pr.product_family END
)
SELECT accounting_date, $period AS period, entity_id, erp_subsidiary, journal_id, category,
    row_number() OVER (PARTITION BY journal_id
        ORDER BY accounting_date, invoice_id NULLS LAST, source_ref, ord, role, product_id)
        AS line_no,
    account, role AS account_role,
    CAST(greatest(signed, 0) AS DECIMAL(38,12)) AS debit,
    CAST(greatest(-signed, 0) AS DECIMAL(38,12)) AS credit,
    currency, functional_currency, fx_rate, fx_rate_date, fx_quote_date,
    CAST(greatest(functional_signed, 0) AS DECIMAL(38,12)) AS functional_debit,
    CAST(greatest(-functional_signed, 0) AS DECIMAL(38,12)) AS functional_credit,
    product_id, product_family, business_unit, department, customer_id, contract_id,
    invoice_id, line_id, service_period, memo, source_ref,
    coalesce(contract_id || ':' || service_period, journal_id) AS correlation_id
FROM mapped
ORDER BY journal_id, line_no
"""


def base_currency(fx_rates: pa.Table) -> str:
    """The one currency every rate is quoted from."""
    bases = sorted(set(fx_rates["from_currency"].to_pylist()))
    if len(bases) > 1:
        raise ValueError(
            f"fx_rates: rates are quoted from {bases}; quote them all from one base currency"
        )
    return bases[0] if bases else "USD"


def journal_lines(
    con: duckdb.DuckDBPyConnection,
    invoice_history: pa.Table,
    schedule: pa.Table,
    entities: pa.Table,
    accounts: pa.Table,
    products: pa.Table,
    fx_rates: pa.Table,
    period: str,
    month_start: date,
    month_end: date,
    fx_max_age_days: int = 0,
) -> pa.Table:
    """The accounting period's journal lines. ``invoice_history`` holds invoice_lines of
    (at least) this month and the one before; ``schedule`` is this month's
    revenue_schedule. Lines whose account or FX rate is missing keep a NULL there (the
    journal checks fail on them and the exceptions queue names them)."""
    install_rounding(con)
    con.execute(_MACROS)
    con.register("je_currencies", currency_table())
    con.register("je_invoice_lines", invoice_history)
    con.register("je_schedule", schedule)
    con.register("je_entities", entities)
    con.register("je_accounts", accounts)
    con.register("je_products", products)
    con.register("je_fx", fx_rates)
    previous = (month_start - timedelta(days=1)).strftime("%Y-%m")
    con.execute(
        _POSTINGS.format(accrued=str(ACCRUED_KINDS)),
        {
            "period": period,
            "previous": previous,
            "month_start": month_start,
            "month_end": month_end,
        },
    )
    base = base_currency(fx_rates)
    con.execute(_UNITS, {"base": base})
    con.execute(_CONVERTED, {"base": base, "period": period, "max_age": fx_max_age_days})
    table = con.sql(_LINES, params={"period": period}).to_arrow_table()
    return table.cast(JOURNAL_SCHEMA)
