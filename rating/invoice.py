"""Invoice lines: a month's rated usage, recurring fees, commitment true-ups, credits and
prepaid drawdown, as the documents a customer receives, with deterministic ids.

The close of a month issues, per contract:
- a usage invoice dated the first day of the next month (usage is billed in arrears): the
  month's usage lines and per-charge minimum true-ups from ``billable_usage``, and a
  contract minimum-commitment true-up when the month's usage spend falls short of the
  commitment (prorated by the days the contract is in force in the month);
- a recurring-fee invoice on each day a billing period starts or its terms change (fees
  are billed in advance; see ``rating.recurring``);
- a credit memo per credit granted for the month (``credits.csv``), dated like the usage
  invoice.

A prepaid credit balance pays for invoice lines as they come: by invoice date, then invoice,
then within an invoice usage before per-charge true-ups before the commitment true-up before
recurring fees (then by line id), up to what is left. What a line takes is its
``prepaid_applied``; each invoice gets one ``prepaid_drawdown`` line for the sum, so the
invoice total is what the customer still owes. Credit memos and negative lines do not refill
the balance (a refund is owed to the customer instead). A balance is usable on invoices dated
up to its expiry day; what is left after the month it expires in is breakage. The rest is
carried to the next month (``prepaid_balances``).

``invoice_id``: ``INV-<contract>-<invoice date>-U`` (usage), ``-R`` (recurring fees), ``-P``
(prepaid credit sold with a contract starting in the month) and ``CM-<credit id>``;
``line_id``: the invoice id and the first 16 hex digits of the MD5 of the line's source
reference (the billable_usage item, the fee period and day, the credit), so a rerun gives
the same ids and a new line never renumbers the others.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pyarrow as pa

from rating.currency import currency_table, install_rounding
from rating.recurring import recurring_lines

DECIMAL = pa.decimal128(38, 12)

PREPAID_SCHEMA = pa.schema(
    [
        ("period", pa.string()),
        ("contract_id", pa.string()),
        ("customer_id", pa.string()),
        ("entity_id", pa.string()),
        ("currency", pa.string()),
        ("expires_on", pa.date32()),
        ("opening", DECIMAL),
        ("drawn", DECIMAL),
        ("expired", DECIMAL),
        ("closing", DECIMAL),
    ]
)

_KIND_ORDER = """
CREATE OR REPLACE TEMP MACRO inv_kind_order(kind) AS
    CASE kind WHEN 'prepaid_purchase' THEN 0 WHEN 'usage' THEN 1 WHEN 'minimum_true_up' THEN 2
              WHEN 'commitment_true_up' THEN 3 WHEN 'recurring' THEN 4
              WHEN 'recurring_adjustment' THEN 5 WHEN 'prior_period_adjustment' THEN 6
              WHEN 'credit' THEN 7 WHEN 'prepaid_drawdown' THEN 8 END
"""

_CHARGED = """
CREATE OR REPLACE TEMP TABLE invoice_charged AS
WITH usage_lines AS (
    SELECT b.contract_id, b.customer_id, b.plan_id, b.charge_id, b.product_id, b.kind,
        CAST($invoice_date AS DATE) AS invoice_date, 'U' AS suffix,
        b.segment_start AS service_start, b.segment_end AS service_end,
        b.billable_quantity AS quantity, b.currency, b.amount_precise,
        b.contract_id || '|' || strftime(b.segment_start, '%Y-%m-%d') || '|' || b.charge_id
            || '|' || b.price_group || '|' || b.kind AS source_ref,
        CASE b.kind
            WHEN 'usage' THEN b.charge_id || ' usage, ' || b.model
                || CASE WHEN b.price_group <> '{}' THEN ' ' || b.price_group ELSE '' END
            ELSE b.charge_id || ' minimum spend true-up'
        END AS description
    FROM billable b
), commitments AS (
    SELECT c.contract_id, c.customer_id, c.plan_id, c.commitment_product_id,
        cu.currency,
        rc_prorate(c.minimum_commitment, s.days, $month_days) AS committed,
        min(s.first_day) AS first_day, max(s.last_day) AS last_day
    FROM contracts c
    JOIN (SELECT contract_id, sum(segment_end - segment_start + 1) AS days,
                 min(segment_start) AS first_day, max(segment_end) AS last_day
          FROM segments GROUP BY contract_id) s USING (contract_id)
    JOIN customers cu USING (customer_id)
    WHERE c.minimum_commitment IS NOT NULL
    GROUP BY ALL
), commitment_lines AS (
    SELECT m.contract_id, m.customer_id, m.plan_id, NULL AS charge_id,
        m.commitment_product_id AS product_id, 'commitment_true_up' AS kind,
        CAST($invoice_date AS DATE) AS invoice_date, 'U' AS suffix,
        m.first_day AS service_start, m.last_day AS service_end,
        CAST(0 AS DECIMAL(38,12)) AS quantity, m.currency,
        CAST(m.committed - coalesce(sp.spent, 0) AS DECIMAL(38,12)) AS amount_precise,
        m.contract_id || '|' || $period || '|commitment' AS source_ref,
        'minimum commitment true-up' AS description
    FROM commitments m
    -- Against the lines as billed (rounded), so usage and true-up add up to the commitment.
    LEFT JOIN (SELECT contract_id, sum(amount) AS spent FROM billable
               GROUP BY contract_id) sp USING (contract_id)
    WHERE coalesce(sp.spent, 0) < m.committed
), fee_lines AS (
    SELECT r.contract_id, r.customer_id, r.plan_id, r.charge_id, r.product_id, r.kind,
        r.invoice_date, 'R' AS suffix, r.service_start, r.service_end, r.quantity, r.currency,
        r.amount_precise,
        r.contract_id || '|' || r.charge_id || '|' || r.plan_id || '|'
            || strftime(r.period_start, '%Y-%m-%d') || '|'
            || strftime(r.invoice_date, '%Y-%m-%d') AS source_ref,
        r.charge_id || ' ' || r.interval || 'ly fee, period '
            || strftime(r.period_start, '%Y-%m-%d') || ' to '
            || strftime(r.period_end, '%Y-%m-%d')
            || CASE WHEN r.kind = 'recurring_adjustment'
                    THEN ', change from ' || strftime(r.invoice_date, '%Y-%m-%d') ELSE '' END
            AS description
    FROM recurring_lines r
), credit_lines AS (
    SELECT cr.contract_id, c.customer_id, c.plan_id, NULL AS charge_id, cr.product_id,
        'credit' AS kind, CAST($invoice_date AS DATE) AS invoice_date, NULL AS suffix,
        CAST($month_start AS DATE) AS service_start, CAST($month_end AS DATE) AS service_end,
        CAST(0 AS DECIMAL(38,12)) AS quantity, cr.currency,
        CAST(-cr.amount AS DECIMAL(38,12)) AS amount_precise, cr.credit_id AS source_ref,
        cr.reason AS description
    FROM credits cr JOIN contracts c USING (contract_id)
    WHERE cr.period = $period
), purchase_lines AS (
    -- Prepaid credit granted with a contract that starts this month is sold to the
    -- customer that day: a liability until it is used or expires.
    SELECT c.contract_id, c.customer_id, c.plan_id, NULL AS charge_id, NULL AS product_id,
        'prepaid_purchase' AS kind, c.start_date AS invoice_date, 'P' AS suffix,
        c.start_date AS service_start,
        coalesce(c.prepaid_expires_on, c.last_day, c.start_date) AS service_end,
        CAST(0 AS DECIMAL(38,12)) AS quantity, cu.currency,
        CAST(c.prepaid_credit AS DECIMAL(38,12)) AS amount_precise,
        c.contract_id || '|prepaid_purchase' AS source_ref,
        'prepaid credit' || coalesce(', usable until ' || c.prepaid_expires_on, '')
            AS description
    FROM contracts c JOIN customers cu USING (customer_id)
    WHERE c.prepaid_credit IS NOT NULL AND c.start_date BETWEEN $month_start AND $month_end
), lines AS (
    SELECT * FROM usage_lines
    UNION ALL BY NAME SELECT * FROM purchase_lines
    UNION ALL BY NAME SELECT * FROM commitment_lines
    UNION ALL BY NAME SELECT * FROM fee_lines
    UNION ALL BY NAME SELECT * FROM credit_lines
)
SELECT l.*, cu.entity_id,
    CASE WHEN l.kind = 'credit' THEN 'credit_memo' ELSE 'invoice' END AS document_type,
    CASE WHEN l.kind = 'credit' THEN 'CM-' || l.source_ref
         ELSE 'INV-' || l.contract_id || '-' || strftime(l.invoice_date, '%Y%m%d') || '-'
              || l.suffix
    END AS invoice_id,
    mc_round_half_even(l.amount_precise, m.minor_units) AS amount
FROM lines l
JOIN customers cu USING (customer_id)
JOIN inv_currencies m ON m.code = l.currency
"""

_WITH_IDS = """
CREATE OR REPLACE TEMP TABLE invoice_charged_ids AS
SELECT *, invoice_id || '-' || substr(md5(source_ref), 1, 16) AS line_id
FROM invoice_charged
"""

# The prepaid balance pays lines in the documented order, up to what is left.
_PREPAID = """
CREATE OR REPLACE TEMP TABLE prepaid_applied AS
WITH eligible AS (
    SELECT l.line_id, l.contract_id, l.amount, p.opening,
        sum(l.amount) OVER (
            PARTITION BY l.contract_id
            ORDER BY l.invoice_date, l.invoice_id, inv_kind_order(l.kind), l.line_id
            ROWS UNBOUNDED PRECEDING) AS running
    FROM invoice_charged_ids l
    JOIN prepaid_opening p USING (contract_id)
    WHERE l.document_type = 'invoice' AND l.amount > 0 AND l.kind <> 'prepaid_purchase'
      AND (p.expires_on IS NULL OR l.invoice_date <= p.expires_on)
)
SELECT line_id, contract_id,
    CAST(least(amount, greatest(opening - (running - amount), 0)) AS DECIMAL(38,12))
        AS applied
FROM eligible
"""

_LINES = """
WITH charged AS (
    SELECT l.*, coalesce(a.applied, CAST(0 AS DECIMAL(38,12))) AS prepaid_applied
    FROM invoice_charged_ids l LEFT JOIN prepaid_applied a USING (line_id)
), drawdowns AS (
    SELECT any_value(contract_id) AS contract_id, any_value(customer_id) AS customer_id,
        any_value(entity_id) AS entity_id, any_value(plan_id) AS plan_id,
        NULL AS charge_id, NULL AS product_id, 'prepaid_drawdown' AS kind,
        invoice_date, 'invoice' AS document_type, invoice_id,
        min(service_start) AS service_start, max(service_end) AS service_end,
        CAST(0 AS DECIMAL(38,12)) AS quantity, any_value(currency) AS currency,
        CAST(-sum(prepaid_applied) AS DECIMAL(38,12)) AS amount_precise,
        CAST(-sum(prepaid_applied) AS DECIMAL(38,12)) AS amount,
        CAST(0 AS DECIMAL(38,12)) AS prepaid_applied,
        invoice_id || '|prepaid' AS source_ref,
        'prepaid credit drawn down' AS description
    FROM charged
    GROUP BY invoice_id, invoice_date
    HAVING sum(prepaid_applied) > 0
), lines AS (
    SELECT * EXCLUDE (suffix) FROM charged
    UNION ALL BY NAME
    SELECT *, invoice_id || '-' || substr(md5(source_ref), 1, 16) AS line_id FROM drawdowns
)
SELECT $period AS period, invoice_date, document_type, invoice_id, line_id, entity_id,
    customer_id, contract_id, plan_id, charge_id, product_id, kind, service_start,
    service_end, quantity, currency, amount_precise, amount, prepaid_applied, source_ref,
    description, $period AS service_period, CAST(NULL AS VARCHAR) AS adjusts_line_id
FROM lines
ORDER BY invoice_date, invoice_id, inv_kind_order(kind), line_id
"""

_BALANCES = """
SELECT $period AS period, p.contract_id, c.customer_id, cu.entity_id, cu.currency,
    p.expires_on, p.opening,
    CAST(coalesce(d.drawn, 0) AS DECIMAL(38,12)) AS drawn,
    CAST(CASE WHEN p.expires_on <= $month_end THEN p.opening - coalesce(d.drawn, 0)
              ELSE 0 END AS DECIMAL(38,12)) AS expired,
    CAST(CASE WHEN p.expires_on <= $month_end THEN 0
              ELSE p.opening - coalesce(d.drawn, 0) END AS DECIMAL(38,12)) AS closing
FROM prepaid_opening p
JOIN contracts c USING (contract_id)
JOIN customers cu ON cu.customer_id = c.customer_id
LEFT JOIN (SELECT contract_id, sum(applied) AS drawn FROM prepaid_applied GROUP BY contract_id) d
    USING (contract_id)
ORDER BY p.contract_id
"""

# Opening balances: last month's closing where there is one, else the balance granted —
# for contracts started by the month's end whose credit has not expired before it.
_OPENING = """
CREATE OR REPLACE TEMP TABLE prepaid_opening AS
SELECT c.contract_id, c.prepaid_expires_on AS expires_on,
    CAST(coalesce(prev.closing, c.prepaid_credit) AS DECIMAL(38,12)) AS opening
FROM contracts c
LEFT JOIN previous_balances prev USING (contract_id)
WHERE c.prepaid_credit IS NOT NULL AND c.start_date <= $month_end
  AND (c.prepaid_expires_on IS NULL OR c.prepaid_expires_on >= $month_start)
"""


# What a locked month's invoices should have been (restated from today's data: late events,
# a reprocessed month) against what was issued and adjusted since, per line. Each
# difference is a line of the open period's usage invoice; its amount is the difference of
# the rounded amounts, so what the customer is billed for a line over all its invoices is
# always the restated line, rounded once. Prepaid drawdown is not restated: an adjustment is
# invoiced in full.
_ADJUSTMENTS = """
WITH restated AS (
    SELECT * FROM adj_restated WHERE kind NOT IN ('prepaid_drawdown', 'prepaid_purchase')
), issued AS (
    -- The month's own lines: its adjustments of earlier months are not part of it.
    SELECT * FROM adj_issued
    WHERE kind NOT IN ('prepaid_drawdown', 'prepaid_purchase', 'prior_period_adjustment')
), adjusted AS (
    SELECT adjusts_line_id AS line_id, sum(quantity) AS quantity,
        sum(amount_precise) AS amount_precise, sum(amount) AS amount
    FROM adj_earlier WHERE service_period = $restated_period GROUP BY adjusts_line_id
), compared AS (
    SELECT coalesce(r.line_id, i.line_id) AS original_line_id,
        coalesce(r.entity_id, i.entity_id) AS entity_id,
        coalesce(r.customer_id, i.customer_id) AS customer_id,
        coalesce(r.contract_id, i.contract_id) AS contract_id,
        coalesce(r.plan_id, i.plan_id) AS plan_id,
        coalesce(r.charge_id, i.charge_id) AS charge_id,
        coalesce(r.product_id, i.product_id) AS product_id,
        coalesce(r.kind, i.kind) AS original_kind,
        coalesce(r.service_start, i.service_start) AS service_start,
        coalesce(r.service_end, i.service_end) AS service_end,
        coalesce(r.currency, i.currency) AS currency,
        coalesce(r.description, i.description) AS original_description,
        CAST(coalesce(r.quantity, 0) - coalesce(i.quantity, 0) - coalesce(a.quantity, 0)
             AS DECIMAL(38,12)) AS quantity,
        CAST(coalesce(r.amount_precise, 0) - coalesce(i.amount_precise, 0)
             - coalesce(a.amount_precise, 0) AS DECIMAL(38,12)) AS amount_precise,
        CAST(coalesce(r.amount, 0) - coalesce(i.amount, 0) - coalesce(a.amount, 0)
             AS DECIMAL(38,12)) AS amount
    FROM restated r
    FULL JOIN issued i USING (line_id)
    LEFT JOIN adjusted a ON a.line_id = coalesce(r.line_id, i.line_id)
), lines AS (
    SELECT *,
        'INV-' || contract_id || '-' || strftime(CAST($invoice_date AS DATE), '%Y%m%d') || '-U'
            AS invoice_id,
        'ADJ|' || $restated_period || '|' || original_line_id AS source_ref
    FROM compared
    WHERE amount <> 0 OR amount_precise <> 0 OR quantity <> 0
)
SELECT $period AS period, CAST($invoice_date AS DATE) AS invoice_date,
    'invoice' AS document_type, invoice_id,
    invoice_id || '-' || substr(md5(source_ref), 1, 16) AS line_id, entity_id, customer_id,
    contract_id, plan_id, charge_id, product_id, 'prior_period_adjustment' AS kind,
    service_start, service_end, quantity, currency, amount_precise, amount,
    CAST(0 AS DECIMAL(38,12)) AS prepaid_applied, source_ref,
    $restated_period || ' restated (' || original_kind || '): ' || original_description
        AS description,
    $restated_period AS service_period, original_line_id AS adjusts_line_id
FROM lines
ORDER BY invoice_id, line_id
"""


def prior_period_adjustments(
    con: duckdb.DuckDBPyConnection,
    restated: pa.Table,
    issued: pa.Table,
    earlier: pa.Table,
    restated_period: str,
    period: str,
    month_end: date,
) -> pa.Table:
    """Adjustment lines, in ``period``'s usage invoice, for what ``restated_period``'s
    invoice lines now are (``restated``) beyond what was issued (``issued``) and adjusted
    since (``earlier``: adjustment lines of the months in between)."""
    con.register("adj_restated", restated)
    con.register("adj_issued", issued)
    con.register("adj_earlier", earlier)
    return con.sql(
        _ADJUSTMENTS,
        params={
            "period": period,
            "restated_period": restated_period,
            "invoice_date": month_end + timedelta(days=1),
        },
    ).to_arrow_table()


def invoice_lines(
    con: duckdb.DuckDBPyConnection,
    billable: pa.Table,
    customers: pa.Table,
    credits: pa.Table,
    previous_balances: pa.Table | None,
    period: str,
    month_start: date,
    month_end: date,
) -> tuple[pa.Table, pa.Table]:
    """The month's invoice lines and prepaid balances.

    ``con`` holds the month's terms (``rating.terms.terms_in_force``); ``billable`` is the
    month's billable_usage; ``customers`` has customer_id, entity_id and currency;
    ``credits`` is ``rating.credits.parse_credits``'s table; ``previous_balances`` is last
    month's prepaid_balances (None when this is the first month billed).
    """
    install_rounding(con)
    con.register("inv_currencies", currency_table())
    con.register("billable", billable)
    con.register("customers", customers)
    con.register("credits", credits)
    con.register(
        "previous_balances",
        previous_balances if previous_balances is not None else PREPAID_SCHEMA.empty_table(),
    )
    recurring_lines(con, month_start, month_end)
    con.execute(_KIND_ORDER)
    params = {
        "period": period,
        "invoice_date": month_end + timedelta(days=1),
        "month_start": month_start,
        "month_end": month_end,
        "month_days": (month_end - month_start).days + 1,
    }
    con.execute(_CHARGED, params)
    con.execute(_WITH_IDS)
    con.execute(_OPENING, {"month_start": month_start, "month_end": month_end})
    con.execute(_PREPAID)
    lines = con.sql(_LINES, params={"period": period}).to_arrow_table()
    balances = con.sql(
        _BALANCES, params={"period": period, "month_end": month_end}
    ).to_arrow_table()
    return lines, balances.cast(PREPAID_SCHEMA)
