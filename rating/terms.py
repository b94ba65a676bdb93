"""Contract terms in force: a month split into service segments, and each usage charge's
price in each segment.

A mid-month plan change, price override or quantity change starts a new segment; usage in
each segment is priced under that segment's terms (tiers restart per segment). Reference
records become Arrow tables once; the month's segments and terms are then worked out for
every contract at once in DuckDB (ASOF joins pick the amendment in force on a day).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import duckdb
import pyarrow as pa

from rating.contracts import Contract
from rating.plans import MODEL_PARAMETERS, Plan

DECIMAL = pa.decimal128(38, 12)
PRICE_PARAMETERS = tuple(
    sorted({p for required, optional in MODEL_PARAMETERS.values() for p in (*required, *optional)})
)


def reference_tables(
    plans: Mapping[str, Plan], contracts: Mapping[str, Contract]
) -> dict[str, pa.Table]:
    """Plans and contracts as flat tables: the only per-record Python, at load time."""
    usage_rows = []
    tier_rows = []
    recurring_rows = [
        {
            "plan_id": plan.plan_id,
            "currency": plan.currency,
            "charge_id": charge.charge_id,
            "product_id": charge.product_id,
            "amount": charge.amount,
            "interval": charge.interval,
            "quantity": charge.quantity,
        }
        for plan in plans.values()
        for charge in plan.recurring
    ]
    for plan in plans.values():
        for charge in plan.usage:
            usage_rows.append(
                {
                    "plan_id": plan.plan_id,
                    "currency": plan.currency,
                    "charge_id": charge.charge_id,
                    "meter": charge.meter,
                    "product_id": charge.product_id,
                    "model": charge.model,
                    "included_units": charge.included_units,
                    "minimum_amount": charge.minimum_amount,
                    "group_by": list(charge.group_by),
                    **{p: charge.parameters.get(p) for p in PRICE_PARAMETERS},
                }
            )
            tier_rows += [
                {
                    "plan_id": plan.plan_id,
                    "charge_id": charge.charge_id,
                    "tier_no": n,
                    "up_to": t.up_to,
                    "unit_amount": t.unit_amount,
                    "flat_amount": t.flat_amount,
                    "rate": t.rate,
                }
                for n, t in enumerate(charge.tiers, start=1)
            ]
    contract_rows = []
    change_rows = []
    override_rows = []
    override_tier_rows = []
    for c in contracts.values():
        contract_rows.append(
            {
                "contract_id": c.contract_id,
                "customer_id": c.customer_id,
                "plan_id": c.plan_id,
                "start_date": c.start_date,
                "last_day": c.last_day,
                "billing_alignment": c.billing_alignment,
                "end_date": c.end_date,
                "cancelled_from": c.cancelled_from,
                "anniversary": c.anniversary or c.start_date,
                "prepaid_credit": c.prepaid_credit,
                "prepaid_expires_on": c.prepaid_expires_on,
                "minimum_commitment": c.minimum_commitment,
                "commitment_product_id": c.commitment_product_id,
            }
        )
        for a in c.amendments:
            if a.type in ("plan_change", "price_override", "quantity_change"):
                change_rows.append(
                    {
                        "contract_id": c.contract_id,
                        "effective_date": a.effective_date,
                        "type": a.type,
                        "plan_id": a.plan_id,
                        "charge_id": a.charge_id,
                        "quantity": a.quantity,
                    }
                )
            if a.type == "price_override":
                override_rows += [
                    {
                        "contract_id": c.contract_id,
                        "effective_date": a.effective_date,
                        "charge_id": a.charge_id,
                        "field": name,
                        "value": value,
                    }
                    for name, value in a.prices.items()
                ]
                if a.tiers:
                    override_rows.append(
                        {
                            "contract_id": c.contract_id,
                            "effective_date": a.effective_date,
                            "charge_id": a.charge_id,
                            "field": "tiers",
                            "value": None,
                        }
                    )
                override_tier_rows += [
                    {
                        "contract_id": c.contract_id,
                        "effective_date": a.effective_date,
                        "charge_id": a.charge_id,
                        "tier_no": n,
                        "up_to": t.up_to,
                        "unit_amount": t.unit_amount,
                        "flat_amount": t.flat_amount,
                        "rate": t.rate,
                    }
                    for n, t in enumerate(a.tiers, start=1)
                ]
    tier_schema = {
        "tier_no": pa.int32(),
        "up_to": DECIMAL,
        "unit_amount": DECIMAL,
        "flat_amount": DECIMAL,
        "rate": DECIMAL,
    }
    return {
        "plan_usage": pa.Table.from_pylist(
            usage_rows,
            schema=pa.schema(
                [
                    ("plan_id", pa.string()),
                    ("currency", pa.string()),
                    ("charge_id", pa.string()),
                    ("meter", pa.string()),
                    ("product_id", pa.string()),
                    ("model", pa.string()),
                    ("included_units", DECIMAL),
                    ("minimum_amount", DECIMAL),
                    ("group_by", pa.list_(pa.string())),
                ]
                + [(p, DECIMAL) for p in PRICE_PARAMETERS]
            ),
        ),
        "plan_recurring": pa.Table.from_pylist(
            recurring_rows,
            schema=pa.schema(
                [
                    ("plan_id", pa.string()),
                    ("currency", pa.string()),
                    ("charge_id", pa.string()),
                    ("product_id", pa.string()),
                    ("amount", DECIMAL),
                    ("interval", pa.string()),
                    ("quantity", DECIMAL),
                ]
            ),
        ),
        "plan_tiers": pa.Table.from_pylist(
            tier_rows,
            schema=pa.schema(
                [("plan_id", pa.string()), ("charge_id", pa.string()), *tier_schema.items()]
            ),
        ),
        "contracts": pa.Table.from_pylist(
            contract_rows,
            schema=pa.schema(
                [
                    ("contract_id", pa.string()),
                    ("customer_id", pa.string()),
                    ("plan_id", pa.string()),
                    ("start_date", pa.date32()),
                    ("last_day", pa.date32()),
                    ("billing_alignment", pa.string()),
                    ("end_date", pa.date32()),
                    ("cancelled_from", pa.date32()),
                    ("anniversary", pa.date32()),
                    ("prepaid_credit", DECIMAL),
                    ("prepaid_expires_on", pa.date32()),
                    ("minimum_commitment", DECIMAL),
                    ("commitment_product_id", pa.string()),
                ]
            ),
        ),
        "term_changes": pa.Table.from_pylist(
            change_rows,
            schema=pa.schema(
                [
                    ("contract_id", pa.string()),
                    ("effective_date", pa.date32()),
                    ("type", pa.string()),
                    ("plan_id", pa.string()),
                    ("charge_id", pa.string()),
                    ("quantity", DECIMAL),
                ]
            ),
        ),
        "price_overrides": pa.Table.from_pylist(
            override_rows,
            schema=pa.schema(
                [
                    ("contract_id", pa.string()),
                    ("effective_date", pa.date32()),
                    ("charge_id", pa.string()),
                    ("field", pa.string()),
                    ("value", DECIMAL),
                ]
            ),
        ),
        "override_tiers": pa.Table.from_pylist(
            override_tier_rows,
            schema=pa.schema(
                [
                    ("contract_id", pa.string()),
                    ("effective_date", pa.date32()),
                    ("charge_id", pa.string()),
                    *tier_schema.items(),
                ]
            ),
        ),
    }


# Plan segments: each contract's days in the month, cut where its plan changes, with the
# plan in force on a segment's first day (the latest plan change on or before it).
_SEGMENTS = """
CREATE OR REPLACE TEMP TABLE segments AS
WITH active AS (
    SELECT * FROM contracts
    WHERE start_date <= $month_end AND (last_day IS NULL OR last_day >= $month_start)
), cuts AS (
    SELECT contract_id, greatest(start_date, $month_start) AS cut FROM active
    UNION
    SELECT t.contract_id, t.effective_date FROM term_changes t
    SEMI JOIN active a USING (contract_id)
    WHERE t.type = 'plan_change'
      AND t.effective_date > $month_start AND t.effective_date <= $month_end
), spans AS (
    SELECT contract_id, cut AS segment_start,
        lead(cut) OVER (PARTITION BY contract_id ORDER BY cut) AS next_cut
    FROM cuts
), cut AS (
    SELECT s.contract_id, a.customer_id, s.segment_start,
        least(coalesce(s.next_cut - 1, $month_end), coalesce(a.last_day, $month_end),
              $month_end) AS segment_end,
        a.plan_id AS base_plan_id, a.billing_alignment
    FROM spans s JOIN active a USING (contract_id)
    WHERE s.segment_start <= least(coalesce(a.last_day, $month_end), $month_end)
)
SELECT c.*, coalesce(p.plan_id, c.base_plan_id) AS plan_id,
    coalesce(p.effective_date, DATE '0001-01-01') AS plan_since
FROM cut c
ASOF LEFT JOIN (SELECT * FROM term_changes WHERE type = 'plan_change') p
    ON c.contract_id = p.contract_id AND c.segment_start >= p.effective_date
"""

# Each usage charge of the plan in force, cut again where that charge's price is
# overridden (and only there: a seat count changing leaves usage charges whole), with the
# overrides in force on the segment's first day, made since the plan came into force.
_CHARGE_TERMS = """
CREATE OR REPLACE TEMP TABLE charge_terms AS
WITH plan_charges AS (
    SELECT sp.contract_id, sp.customer_id, sp.segment_start AS plan_start,
        sp.segment_end AS plan_end, sp.plan_id, sp.plan_since, pu.* EXCLUDE (plan_id)
    FROM segments sp
    JOIN plan_usage pu USING (plan_id)
), cuts AS (
    SELECT contract_id, plan_start, charge_id, plan_start AS cut FROM plan_charges
    UNION
    SELECT pc.contract_id, pc.plan_start, pc.charge_id, o.effective_date
    FROM plan_charges pc
    JOIN (SELECT DISTINCT contract_id, charge_id, effective_date FROM price_overrides) o
      ON o.contract_id = pc.contract_id AND o.charge_id = pc.charge_id
     AND o.effective_date > pc.plan_start AND o.effective_date <= pc.plan_end
), spans AS (
    SELECT *, lead(cut) OVER (PARTITION BY contract_id, plan_start, charge_id ORDER BY cut)
        AS next_cut
    FROM cuts
), base AS (
    SELECT pc.*, s.cut AS segment_start, coalesce(s.next_cut - 1, pc.plan_end) AS segment_end
    FROM spans s JOIN plan_charges pc USING (contract_id, plan_start, charge_id)
), overridden AS (
    -- Per field, the latest override on or before the segment's first day.
    SELECT b.contract_id, b.segment_start, b.charge_id,
        {overrides},
        max(o.effective_date) FILTER (WHERE o.field = 'tiers') AS tiers_since
    FROM base b
    JOIN price_overrides o
      ON o.contract_id = b.contract_id AND o.charge_id = b.charge_id
     AND o.effective_date <= b.segment_start AND o.effective_date >= b.plan_since
    GROUP BY b.contract_id, b.segment_start, b.charge_id
)
SELECT b.contract_id, b.customer_id, b.segment_start, b.segment_end,
    (b.segment_end - b.segment_start) + 1 AS segment_days,
    b.plan_id, b.currency, b.charge_id, b.meter, b.product_id, b.model, b.group_by,
    coalesce(w.included_units_value, b.included_units) AS included_units,
    coalesce(w.minimum_amount_value, b.minimum_amount) AS minimum_amount,
    {parameters},
    w.tiers_since
FROM base b
LEFT JOIN overridden w USING (contract_id, segment_start, charge_id)
"""

_TERM_TIERS = """
CREATE OR REPLACE TEMP TABLE term_tiers AS
SELECT t.contract_id, t.segment_start, t.charge_id, pt.tier_no, pt.up_to, pt.unit_amount,
    pt.flat_amount, pt.rate
FROM charge_terms t
JOIN plan_tiers pt ON pt.plan_id = t.plan_id AND pt.charge_id = t.charge_id
WHERE t.tiers_since IS NULL
UNION ALL
SELECT t.contract_id, t.segment_start, t.charge_id, ot.tier_no, ot.up_to, ot.unit_amount,
    ot.flat_amount, ot.rate
FROM charge_terms t
JOIN override_tiers ot ON ot.contract_id = t.contract_id AND ot.charge_id = t.charge_id
    AND ot.effective_date = t.tiers_since
"""


def terms_in_force(
    con: duckdb.DuckDBPyConnection,
    tables: Mapping[str, pa.Table],
    month_start: date,
    month_end: date,
) -> None:
    """Create ``segments``, ``charge_terms`` and ``term_tiers`` on the connection."""
    for name, table in tables.items():
        con.register(name, table)
    month = {"month_start": month_start, "month_end": month_end}
    con.execute(_SEGMENTS, month)
    # Under its former name too: segments now carry their plan.
    con.execute("CREATE OR REPLACE TEMP VIEW segment_plans AS SELECT * FROM segments")
    fields = [*PRICE_PARAMETERS, "included_units", "minimum_amount"]
    overrides = ",\n        ".join(
        f"arg_max(o.value, o.effective_date) FILTER (WHERE o.field = '{f}') AS {f}_value"
        for f in fields
    )
    parameters = ",\n    ".join(f"coalesce(w.{p}_value, b.{p}) AS {p}" for p in PRICE_PARAMETERS)
    con.execute(_CHARGE_TERMS.format(overrides=overrides, parameters=parameters))
    con.execute(_TERM_TIERS)
