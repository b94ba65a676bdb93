"""Reconciliation and the exception queue of a month's close.

``reconciliation``: per period × entity (× currency) × control, what was expected, what
was found, the variance and its explanation. A variance is ``tied`` (zero), ``explained``
(equal to what a known cause accounts for, named in the explanation) or ``unexplained``
— which fails the close's blocking check and stops publishing.

- ``landing_lines`` (entity ``*``): lines landed on the month's landing days = accepted +
  duplicates + quarantined.
- ``lines_accepted`` (``*``): landed → accepted; the variance is the duplicates and the
  quarantined lines, by reason.
- ``usage_rated`` (per entity, event × meter): usage of the month in daily_usage → rated in
  billable_usage; the variance is usage no charge in force prices (each case an exception).
- ``rated_invoiced``: billable_usage → invoice lines, per currency.
- ``invoiced_journalised``: documents dated in the month → the receivable booked.
- ``revenue_journalised``: the revenue schedule's month → revenue booked (accruals,
  reversals, usage invoices, releases, breakage, credits).
- ``deferred_revenue_roll_forward``: opening + billed − recognised = closing.
- ``accruals_roll_forward``: the month-end accruals (unbilled receivable, and customer
  credits for credit memos not yet issued): opening + accrued − reversed = closing.
- ``prepaid_liability_roll_forward``: opening − drawn − expired = closing, and what the
  month's documents drew = what the journals took off the liability.

``exceptions``: the business cases a controller must act on, with a suggested action —
unknown customers, late events, rejected telemetry, usage with no contract in force, meters
no plan prices, unmapped accounts,
missing FX rates, fees adjusted against periods billed before the first close, prepaid
credit expired or used up, commitment shortfalls. Technical errors stay in the logs.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pyarrow as pa

DECIMAL = pa.decimal128(38, 12)

RECONCILIATION_SCHEMA = pa.schema(
    [
        ("period", pa.string()),
        ("entity_id", pa.string()),
        ("currency", pa.string()),
        ("control", pa.string()),
        ("unit", pa.string()),
        ("expected", DECIMAL),
        ("actual", DECIMAL),
        ("variance", DECIMAL),
        ("explained", DECIMAL),
        ("status", pa.string()),
        ("explanation", pa.string()),
    ]
)

EXCEPTION_SCHEMA = pa.schema(
    [
        ("exception_id", pa.string()),
        ("period", pa.string()),
        ("kind", pa.string()),
        ("severity", pa.string()),
        ("entity_id", pa.string()),
        ("contract_id", pa.string()),
        ("customer_id", pa.string()),
        ("reason", pa.string()),
        ("action", pa.string()),
        ("count", pa.int64()),
        ("amount", DECIMAL),
        ("currency", pa.string()),
        ("status", pa.string()),
    ]
)

# Usage of the month no charge in force prices: a daily_usage row whose customer, meter
# and day fall in no charge segment.
# ``under_contract``: the customer had a contract in force that day, whose plan simply
# does not price the meter (metered, not billed); otherwise usage came with no contract.
_UNPRICED = """
CREATE OR REPLACE TEMP TABLE rc_unpriced AS
SELECT d.customer_id, d.meter,
    EXISTS (SELECT 1 FROM segments s WHERE s.customer_id = d.customer_id
            AND d.usage_date BETWEEN s.segment_start AND s.segment_end) AS under_contract,
    count(*) AS rows, sum(d.event_count) AS events,
    min(d.usage_date) AS first_day, max(d.usage_date) AS last_day
FROM rc_daily d
WHERE NOT EXISTS (
    SELECT 1 FROM charge_terms t
    WHERE t.customer_id = d.customer_id AND t.meter = d.meter
      AND d.usage_date BETWEEN t.segment_start AND t.segment_end)
GROUP BY ALL
"""

_CONTROLS = """
WITH landed AS (
    SELECT coalesce(sum(raw_lines), 0) AS raw, coalesce(sum(accepted), 0) AS accepted,
        coalesce(sum(duplicates), 0) AS duplicates, coalesce(sum(quarantined), 0) AS quarantined
    FROM rc_landing
), reasons AS (
    SELECT coalesce(string_agg(reason || ' ' || n, ', ' ORDER BY reason), '') AS text
    FROM (SELECT reason, count(*) AS n FROM rc_quarantined GROUP BY reason)
), usage AS (
    SELECT cu.entity_id, sum(d.event_count) AS events
    FROM rc_daily d JOIN rc_customers cu USING (customer_id) GROUP BY ALL
), unpriced AS (
    SELECT cu.entity_id, sum(u.events) AS events,
        sum(u.events) FILTER (WHERE NOT u.under_contract) AS without_contract,
        count(DISTINCT u.customer_id) FILTER (WHERE NOT u.under_contract) AS customers,
        sum(u.events) FILTER (WHERE u.under_contract) AS not_priced
    FROM rc_unpriced u JOIN rc_customers cu USING (customer_id) GROUP BY ALL
), rated AS (
    SELECT cu.entity_id, sum(b.event_count) AS events
    FROM rc_billable b JOIN rc_customers cu USING (customer_id)
    WHERE b.kind = 'usage' GROUP BY ALL
), rated_amounts AS (
    SELECT cu.entity_id, b.currency, sum(b.amount) AS amount
    FROM rc_billable b JOIN rc_customers cu USING (customer_id) GROUP BY ALL
), invoiced_rated AS (
    SELECT entity_id, currency, sum(amount) AS amount FROM rc_invoices
    WHERE period = $period AND kind IN ('usage', 'minimum_true_up') GROUP BY ALL
), documents AS (
    SELECT entity_id, currency, sum(amount) AS amount FROM rc_invoices
    WHERE invoice_date BETWEEN $month_start AND $month_end GROUP BY ALL
), booked AS (
    SELECT entity_id, currency, category, account_role,
        sum(debit) - sum(credit) AS net
    FROM rc_journals GROUP BY ALL
), receivable AS (
    SELECT entity_id, currency, sum(net) AS amount FROM booked
    WHERE category = 'billing' AND account_role = 'receivable' GROUP BY ALL
), revenue_booked AS (
    SELECT entity_id, currency, -sum(net) AS amount FROM booked
    WHERE account_role IN ('revenue', 'breakage') GROUP BY ALL
), revenue_scheduled AS (
    SELECT entity_id, currency, sum(recognized) AS amount FROM rc_schedule GROUP BY ALL
), deferred AS (
    SELECT entity_id, currency,
        sum(CASE WHEN src = 'opening' THEN amount ELSE 0 END) AS opening,
        sum(CASE WHEN src = 'billed' THEN amount ELSE 0 END) AS billed,
        sum(CASE WHEN src = 'recognized' THEN amount ELSE 0 END) AS recognized,
        sum(CASE WHEN src = 'closing' THEN amount ELSE 0 END) AS closing
    FROM (
        SELECT entity_id, currency, 'opening' AS src, deferred_balance AS amount
        FROM rc_schedule_before WHERE pattern = 'ratable'
        UNION ALL
        SELECT entity_id, currency, 'billed', -net FROM booked
        WHERE category = 'billing' AND account_role = 'deferred_revenue'
        UNION ALL
        SELECT entity_id, currency, 'recognized', net FROM booked
        WHERE category = 'revenue_release' AND account_role = 'deferred_revenue'
        UNION ALL
        SELECT entity_id, currency, 'closing', deferred_balance FROM rc_schedule
        WHERE pattern = 'ratable'
    )
    GROUP BY ALL
), unbilled AS (
    SELECT entity_id, currency,
        sum(CASE WHEN category = 'usage_accrual' THEN net ELSE 0 END) AS accrued,
        sum(CASE WHEN category = 'accrual_reversal' THEN -net ELSE 0 END) AS reversed
    FROM booked WHERE account_role IN ('unbilled_receivable', 'customer_credits')
    GROUP BY ALL
), unbilled_opening AS (
    SELECT entity_id, currency, sum(amount) AS opening FROM rc_invoices
    WHERE period = $previous AND kind IN ('usage', 'minimum_true_up', 'commitment_true_up',
                                          'prior_period_adjustment', 'credit')
    GROUP BY ALL
), prepaid AS (
    SELECT entity_id, currency, sum(opening) AS opening, sum(drawn) AS drawn,
        sum(expired) AS expired, sum(closing) AS closing
    FROM rc_prepaid GROUP BY ALL
), liability_lines AS (
    -- The contract liability lines of the billing journals, told apart by what they book.
    SELECT j.entity_id, j.currency, i.kind, sum(j.debit) - sum(j.credit) AS net
    FROM rc_journals j
    JOIN rc_invoices i ON i.line_id = j.line_id
    WHERE j.category = 'billing' AND j.account_role = 'contract_liability'
    GROUP BY ALL
), drawn_documents AS (
    SELECT entity_id, currency, -sum(amount) AS amount FROM rc_invoices
    WHERE kind = 'prepaid_drawdown' AND invoice_date BETWEEN $month_start AND $month_end
    GROUP BY ALL
), drawn_booked AS (
    SELECT entity_id, currency, sum(net) AS amount FROM liability_lines
    WHERE kind = 'prepaid_drawdown' GROUP BY ALL
), sold_documents AS (
    SELECT entity_id, currency, sum(amount) AS amount FROM rc_invoices
    WHERE kind = 'prepaid_purchase' AND invoice_date BETWEEN $month_start AND $month_end
    GROUP BY ALL
), sold_booked AS (
    SELECT entity_id, currency, -sum(net) AS amount FROM liability_lines
    WHERE kind = 'prepaid_purchase' GROUP BY ALL
), rows AS (
    SELECT '*' AS entity_id, '' AS currency, 'landing_lines' AS control, 'lines' AS unit,
        raw AS expected, accepted + duplicates + quarantined AS actual, 0 AS explained,
        'raw = accepted + duplicates + quarantined over the month''s landing days' AS explanation
    FROM landed
    UNION ALL
    SELECT '*', '', 'lines_accepted', 'lines', raw, accepted, duplicates + quarantined,
        duplicates || ' re-sent duplicates; ' || quarantined || ' quarantined'
            || CASE WHEN quarantined > 0 THEN ' (' || (SELECT text FROM reasons) || ')' ELSE '' END
    FROM landed
    UNION ALL
    SELECT u.entity_id, '', 'usage_rated', 'events × meters', u.events,
        coalesce(r.events, 0), coalesce(n.events, 0),
        CASE WHEN coalesce(n.events, 0) > 0
             THEN concat_ws('; ',
                 CASE WHEN n.not_priced > 0 THEN n.not_priced
                      || ' metered under contracts whose plans do not price the meter' END,
                 CASE WHEN n.without_contract > 0 THEN n.without_contract
                      || ' from ' || n.customers || ' customer(s) with no contract in force '
                      || '(in the exception queue)' END)
             ELSE 'every event of the month rated under the terms in force' END
    FROM usage u LEFT JOIN rated r USING (entity_id) LEFT JOIN unpriced n USING (entity_id)
    UNION ALL
    SELECT r.entity_id, r.currency, 'rated_invoiced', 'amount', r.amount,
        coalesce(i.amount, 0), 0, 'every rated line on the month''s usage invoices'
    FROM rated_amounts r LEFT JOIN invoiced_rated i USING (entity_id, currency)
    UNION ALL
    SELECT coalesce(d.entity_id, r.entity_id), coalesce(d.currency, r.currency),
        'invoiced_journalised', 'amount', coalesce(d.amount, 0), coalesce(r.amount, 0), 0,
        'documents dated in the month = receivable booked by the billing journals'
    FROM documents d FULL JOIN receivable r USING (entity_id, currency)
    UNION ALL
    SELECT coalesce(s.entity_id, b.entity_id), coalesce(s.currency, b.currency),
        'revenue_journalised', 'amount', coalesce(s.amount, 0), coalesce(b.amount, 0), 0,
        'revenue scheduled for the month = revenue and breakage booked (accrual − last '
            || 'month''s reversal + usage invoices + releases + breakage)'
    FROM revenue_scheduled s FULL JOIN revenue_booked b USING (entity_id, currency)
    UNION ALL
    SELECT d.entity_id, d.currency, 'deferred_revenue_roll_forward', 'amount',
        d.opening + d.billed - d.recognized, d.closing, 0,
        'opening ' || CAST(d.opening AS DECIMAL(38,2)) || ' + billed '
            || CAST(d.billed AS DECIMAL(38,2)) || ' − recognised '
            || CAST(d.recognized AS DECIMAL(38,2)) || ' = closing '
            || CAST(d.closing AS DECIMAL(38,2))
    FROM deferred d
    UNION ALL
    SELECT coalesce(u.entity_id, o.entity_id), coalesce(u.currency, o.currency),
        'accruals_roll_forward', 'amount',
        coalesce(o.opening, 0) + coalesce(u.accrued, 0) - coalesce(u.reversed, 0),
        coalesce(u.accrued, 0), 0,
        'opening (last month''s accruals: unbilled receivable and customer credits) + '
            || 'accrued − reversed = this month''s accruals'
    FROM unbilled u FULL JOIN unbilled_opening o USING (entity_id, currency)
    UNION ALL
    SELECT p.entity_id, p.currency, 'prepaid_liability_roll_forward', 'amount',
        p.opening - p.drawn - p.expired, p.closing, 0,
        'opening ' || CAST(p.opening AS DECIMAL(38,2)) || ' − drawn '
            || CAST(p.drawn AS DECIMAL(38,2)) || ' − expired '
            || CAST(p.expired AS DECIMAL(38,2))
    FROM prepaid p
    UNION ALL
    SELECT coalesce(d.entity_id, b.entity_id), coalesce(d.currency, b.currency),
        'prepaid_drawn_journalised', 'amount', coalesce(d.amount, 0), coalesce(b.amount, 0), 0,
        'prepaid credit drawn on documents dated in the month = contract liability booked'
    FROM drawn_documents d FULL JOIN drawn_booked b USING (entity_id, currency)
    UNION ALL
    SELECT coalesce(d.entity_id, b.entity_id), coalesce(d.currency, b.currency),
        'prepaid_sold_journalised', 'amount', coalesce(d.amount, 0), coalesce(b.amount, 0), 0,
        'prepaid credit sold on documents dated in the month = contract liability credited'
    FROM sold_documents d FULL JOIN sold_booked b USING (entity_id, currency)
)
SELECT $period AS period, entity_id, currency, control, unit,
    CAST(expected AS DECIMAL(38,12)) AS expected, CAST(actual AS DECIMAL(38,12)) AS actual,
    CAST(expected - actual AS DECIMAL(38,12)) AS variance,
    CAST(explained AS DECIMAL(38,12)) AS explained,
    CASE WHEN expected = actual THEN 'tied'
         WHEN expected - actual = explained THEN 'explained'
         ELSE 'unexplained' END AS status,
    explanation
FROM rows
ORDER BY entity_id, currency, control
"""

_EXCEPTIONS = """
WITH cases AS (
    SELECT 'unknown_customer' AS kind, 'high' AS severity, NULL AS entity_id,
        NULL AS contract_id, customer_id,
        count(*) || ' event line(s) for customer ' || coalesce(customer_id, '?')
            || ', who is not in customers.csv' AS reason,
        'Add the customer (and its contract) to the reference data, then re-ingest landing '
            || 'days ' || min(received_date) || ' to ' || max(received_date)
            || ': the lines are accepted then' AS action,
        count(*) AS n, NULL AS amount, NULL AS currency
    FROM rc_quarantined WHERE reason = 'unknown_customer' GROUP BY customer_id
    UNION ALL
    SELECT 'late_event', 'medium', cu.entity_id, NULL, q.customer_id,
        count(*) || ' event(s) arrived more than the lateness limit after they happened',
        'Bill them by hand or raise METERCLOSE_LATENESS_DAYS and re-ingest '
            || min(q.received_date) || ' to ' || max(q.received_date),
        count(*), NULL, NULL
    FROM rc_quarantined q LEFT JOIN rc_customers cu USING (customer_id)
    WHERE q.reason = 'too_late' GROUP BY ALL
    UNION ALL
    SELECT 'rejected_telemetry', 'low', NULL, NULL, NULL,
        count(*) || ' line(s) quarantined as ' || reason,
        'Ask the sender to fix them; quarantined_events has each line, file and line number',
        count(*), NULL, NULL
    FROM rc_quarantined WHERE reason NOT IN ('unknown_customer', 'too_late') GROUP BY reason
    UNION ALL
    SELECT 'usage_without_contract', 'high', cu.entity_id, NULL, u.customer_id,
        sum(u.events) || ' event(s) from ' || min(u.first_day) || ' to ' || max(u.last_day)
            || ' on days with no contract in force (' || string_agg(DISTINCT u.meter, ', ')
            || ')',
        'Add the customer''s contract (or correct its dates), then close the month again',
        sum(u.events), NULL, NULL
    FROM rc_unpriced u LEFT JOIN rc_customers cu USING (customer_id)
    WHERE NOT u.under_contract GROUP BY cu.entity_id, u.customer_id
    UNION ALL
    SELECT 'meter_not_priced', 'low', cu.entity_id, NULL, NULL,
        sum(u.events) || ' ' || u.meter || ' event(s) from ' || count(DISTINCT u.customer_id)
            || ' customer(s) whose plans do not price that meter',
        'None if metered on purpose; otherwise add a charge on ' || u.meter
            || ' to their plans',
        sum(u.events), NULL, NULL
    FROM rc_unpriced u LEFT JOIN rc_customers cu USING (customer_id)
    WHERE u.under_contract GROUP BY cu.entity_id, u.meter
    UNION ALL
    SELECT 'unmapped_account', 'high', entity_id, NULL, NULL,
        count(*) || ' journal line(s) of role ' || account_role
            || coalesce(' for product family ' || product_family, '')
            || ' have no account',
        'Add the account to accounts.yaml for entity ' || entity_id || ', then close again',
        count(*), sum(debit + credit), any_value(currency)
    FROM rc_journals WHERE account IS NULL GROUP BY entity_id, account_role, product_family
    UNION ALL
    SELECT 'missing_fx_rate', 'high', entity_id, NULL, NULL,
        count(*) || ' journal line(s) in ' || currency || ' have no ' || functional_currency
            || ' rate quoted for their rate date (or within the allowed fallback age)',
        'Add the daily rates to fx_rates.csv (or set METERCLOSE_FX_FALLBACK_MAX_AGE_DAYS '
            || 'for a feed that skips weekends), then close again',
        count(*), sum(debit + credit), currency
    FROM rc_journals WHERE fx_rate IS NULL AND account_role <> 'rounding'
    GROUP BY entity_id, currency, functional_currency
    UNION ALL
    SELECT 'fee_adjusted_before_first_close', 'medium', entity_id, contract_id, customer_id,
        'a change on ' || invoice_date || ' adjusts ' || charge_id || ' for a period '
            || 'billed before the first month closed here; that billing and its deferred '
            || 'revenue are not in these books',
        'Book the opening deferred revenue of that period, or confirm the adjustment',
        1, amount, currency
    FROM rc_prior_adjustments
    UNION ALL
    SELECT 'prepaid_credit_expired', 'info', cu.entity_id, p.contract_id, p.customer_id,
        'prepaid credit of ' || CAST(p.expired AS DECIMAL(38,2)) || ' ' || p.currency
            || ' expired unused on ' || p.expires_on || ' (breakage revenue)',
        'Tell the account owner; nothing to book', 1, p.expired, p.currency
    FROM rc_prepaid p JOIN rc_customers cu USING (customer_id) WHERE p.expired > 0
    UNION ALL
    SELECT 'prepaid_opening_balance', 'medium', cu.entity_id, p.contract_id, p.customer_id,
        'prepaid credit of ' || CAST(p.opening AS DECIMAL(38,2)) || ' ' || p.currency
            || ' was sold before the first month closed here; its contract liability is '
            || 'drawn down in these books but was never credited in them',
        'Book the liability as an opening balance in the ERP', 1, p.opening, p.currency
    FROM rc_prepaid p JOIN rc_customers cu USING (customer_id)
    JOIN contracts c USING (contract_id)
    WHERE p.period = (SELECT min(period) FROM rc_invoices)
      AND c.start_date < CAST(p.period || '-01' AS DATE) AND p.opening > 0
    UNION ALL
    SELECT 'prepaid_balance_after_contract_end', 'medium', cu.entity_id, p.contract_id,
        p.customer_id,
        'prepaid credit of ' || CAST(p.closing AS DECIMAL(38,2)) || ' ' || p.currency
            || ' is left on a contract that ended on ' || c.last_day
            || ' and does not expire',
        'Refund it or recognise it as breakage, as the contract says', 1, p.closing, p.currency
    FROM rc_prepaid p JOIN rc_customers cu USING (customer_id)
    JOIN contracts c USING (contract_id)
    WHERE p.closing > 0 AND p.expires_on IS NULL AND c.last_day <= $month_end    UNION ALL
    SELECT 'prepaid_credit_used_up', 'info', cu.entity_id, p.contract_id, p.customer_id,
        'prepaid credit used up this month; further charges are invoiced',
        'Offer the customer a top-up', 1, p.drawn, p.currency
    FROM rc_prepaid p JOIN rc_customers cu USING (customer_id)
    WHERE p.closing = 0 AND p.drawn > 0 AND p.expired = 0
    UNION ALL
    SELECT 'commitment_shortfall', 'info', entity_id, contract_id, customer_id,
        'usage fell short of the minimum commitment; the shortfall was billed as a true-up',
        'Review the account with its owner', 1, amount, currency
    FROM rc_invoices WHERE period = $period AND kind = 'commitment_true_up'
    UNION ALL
    SELECT 'prior_period_adjusted', 'info', entity_id, contract_id, customer_id,
        count(*) || ' line(s) of ' || service_period || ' restated (late events, or the '
            || 'month reprocessed) and billed in ' || $period || ' as adjustments',
        'None: booked in the open period; the locked month is unchanged',
        count(*), sum(amount), currency
    FROM rc_invoices WHERE period = $period AND kind = 'prior_period_adjustment'
    GROUP BY entity_id, contract_id, customer_id, service_period, currency
)
SELECT 'EX-' || $period || '-' || substr(md5(kind || '|' || coalesce(entity_id, '') || '|'
        || coalesce(contract_id, '') || '|' || coalesce(customer_id, '') || '|' || reason),
        1, 12) AS exception_id,
    $period AS period, kind, severity, entity_id, contract_id, customer_id, reason, action,
    CAST(n AS BIGINT) AS count, CAST(amount AS DECIMAL(38,12)) AS amount, currency,
    'open' AS status
FROM cases
ORDER BY CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 WHEN 'low' THEN 2 ELSE 3 END,
    kind, entity_id NULLS FIRST, contract_id NULLS FIRST, customer_id NULLS FIRST, reason
"""


def close_controls(
    con: duckdb.DuckDBPyConnection,
    *,
    period: str,
    month_start: date,
    month_end: date,
    landing: pa.Table,
    quarantined: pa.Table,
    daily: pa.Table,
    customers: pa.Table,
    billable: pa.Table,
    invoices: pa.Table,
    schedule: pa.Table,
    schedule_before: pa.Table,
    journals: pa.Table,
    prepaid: pa.Table,
) -> tuple[pa.Table, pa.Table]:
    """The month's reconciliation and exceptions. ``con`` holds the month's terms
    (``rating.terms.terms_in_force``). ``landing``: per landing day of the month, raw_lines,
    accepted, duplicates, quarantined; ``quarantined``: those days' quarantined_events;
    ``daily``: daily_usage rows of the month's usage days; ``invoices``: invoice_lines up to
    the month; ``schedule_before``: last month's revenue_schedule (empty in the first)."""
    for name, table in {
        "rc_landing": landing,
        "rc_quarantined": quarantined,
        "rc_daily": daily,
        "rc_customers": customers,
        "rc_billable": billable,
        "rc_invoices": invoices,
        "rc_schedule": schedule,
        "rc_schedule_before": schedule_before,
        "rc_journals": journals,
        "rc_prepaid": prepaid,
    }.items():
        con.register(name, table)
    con.execute(_UNPRICED)
    # A fee adjusted in the month whose period's own billing is nowhere in the books: it
    # was billed before the first month meterclose closed.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE rc_prior_adjustments AS "
        "SELECT * FROM rc_invoices a WHERE a.period = $period "
        "AND a.kind = 'recurring_adjustment' AND NOT EXISTS ("
        "  SELECT 1 FROM rc_invoices o WHERE o.contract_id = a.contract_id "
        "  AND o.charge_id = a.charge_id AND o.kind = 'recurring' "
        "  AND o.service_start <= a.service_start AND o.service_end >= a.service_start)",
        {"period": period},
    )
    params = {
        "period": period,
        "previous": (month_start - timedelta(days=1)).strftime("%Y-%m"),
        "month_start": month_start,
        "month_end": month_end,
    }
    reconciliation = con.sql(_CONTROLS, params=params).to_arrow_table()
    exceptions = con.sql(
        _EXCEPTIONS, params={"period": period, "month_end": month_end}
    ).to_arrow_table()
    return reconciliation.cast(RECONCILIATION_SCHEMA), exceptions.cast(EXCEPTION_SCHEMA)


def landing_calendar_controls(period: str, calendar: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The month's landing calendar as a control and its confirmations as exceptions.

    ``calendar``: one row per landing day of the month's calendar (``landing_calendar``:
    landing_day, status, confirmed_by, confirmed_at, confirmation_reason). Expected: every
    day; actual: the days ingested; the variance is the days a controller confirmed complete
    as they stood (no files, or too many lines quarantined), each named with who, when, why.
    """
    con = duckdb.connect()
    con.register("lc", calendar)
    params = {"period": period}
    control = con.sql(
        """
        WITH confirmed AS (
            SELECT string_agg(landing_day || ' (' || status || ') confirmed by '
                || confirmed_by || ' at ' || confirmed_at || ': ' || confirmation_reason,
                '; ' ORDER BY landing_day) AS text, count(*) AS n
            FROM lc WHERE confirmed_by IS NOT NULL AND status <> 'ingested'
        )
        SELECT $period AS period, '*' AS entity_id, '' AS currency,
            'landing_days_complete' AS control, 'days' AS unit,
            CAST((SELECT count(*) FROM lc) AS DECIMAL(38,12)) AS expected,
            CAST((SELECT count(*) FROM lc WHERE status = 'ingested') AS DECIMAL(38,12)) AS actual,
            CAST(n AS DECIMAL(38,12)) AS variance, CAST(n AS DECIMAL(38,12)) AS explained,
            CASE WHEN n = 0 THEN 'tied' ELSE 'explained' END AS status,
            CASE WHEN n = 0 THEN 'every landing day of the calendar ingested'
                 ELSE text END AS explanation
        FROM confirmed
        """,
        params=params,
    ).to_arrow_table()
    exceptions = con.sql(
        """
        SELECT 'EX-' || $period || '-' || substr(md5('landing_day_confirmed|' || landing_day),
                1, 12) AS exception_id,
            $period AS period, 'landing_day_confirmed' AS kind,
            CASE WHEN status = 'missing' THEN 'medium' ELSE 'low' END AS severity,
            NULL AS entity_id, NULL AS contract_id, NULL AS customer_id,
            'landing day ' || landing_day || ' (' || status || ') confirmed complete as it '
                || 'stood by ' || confirmed_by || ' at ' || confirmed_at || ': '
                || confirmation_reason AS reason,
            'None unless its files arrive: they would be billed late, in the open period'
                AS action,
            CAST(1 AS BIGINT) AS count, CAST(NULL AS DECIMAL(38,12)) AS amount,
            NULL AS currency, 'resolved' AS status
        FROM lc WHERE confirmed_by IS NOT NULL AND status <> 'ingested'
        ORDER BY landing_day
        """,
        params=params,
    ).to_arrow_table()
    con.close()
    return control.cast(RECONCILIATION_SCHEMA), exceptions.cast(EXCEPTION_SCHEMA)
