"""Price many priced items at once, in DuckDB SQL: per_unit, graduated, volume, package,
percentage and graduated_percentage (Lago's semantics, Stripe's ``up_to`` notation).

The caller registers three relations on a DuckDB connection and gets one row per item:
``amount_precise`` (exact where the arithmetic is exact, see below), ``amount`` (rounded
once, half-even, to the currency's minor unit) and a ``breakdown`` whose amounts add up
to ``amount_precise`` exactly. There is no Python loop over items, tiers or events.

Decimal typing. Every amount and quantity is DECIMAL(38,12). DuckDB multiplies two
DECIMAL(38,12) into a DECIMAL(38,24), exactly; each breakdown line's product is brought
back to 12 decimals by rounding half-even at the 12th decimal. That is exact whenever the
true product has at most 12 decimals (a quantity of up to 6 decimals times a price of up
to 6, say); otherwise it is the only place a line is rounded, and the rounded lines are
what ``amount_precise`` sums. A rate in percent (amount × rate / 100, per tier or per
event) is rounded the same way, half-even at 12 decimals: DECIMAL arithmetic has no exact
division (DuckDB divides decimals in DOUBLE). Package counts use integer arithmetic on the
unscaled decimals. Nothing is rounded below 12 decimals except ``amount``. Products must
stay below 10^14 in magnitude (the DECIMAL(38,24) range): DuckDB raises an overflow error
there rather than round.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import duckdb
import pyarrow as pa

from rating.currency import AMOUNT_TYPE, ONE_E_MINUS_12, currency_table, install_rounding
from rating.errors import ReferenceDataError

MODELS = ("per_unit", "graduated", "volume", "package", "percentage", "graduated_percentage")
TIERED_MODELS = ("graduated", "volume", "graduated_percentage")

_BREAKDOWN_ROW = pa.struct(
    [
        ("tier_no", pa.int32()),
        ("units", pa.decimal128(38, 12)),
        ("unit_amount", pa.decimal128(38, 12)),
        ("flat_amount", pa.decimal128(38, 12)),
        ("amount", pa.decimal128(38, 12)),
    ]
)
RESULT_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("amount_precise", pa.decimal128(38, 12)),
        ("amount", pa.decimal128(38, 12)),
        ("breakdown", pa.list_(_BREAKDOWN_ROW)),
    ]
)

# Input columns: name → kind. Required columns must be present; the others default to NULL.
_DECIMAL, _INTEGER, _TEXT, _TIME = "decimal", "integer", "text", "time"
_ITEM_COLUMNS: dict[str, tuple[str, bool]] = {
    "item_id": (_TEXT, True),
    "model": (_TEXT, True),
    "currency": (_TEXT, True),
    "quantity": (_DECIMAL, True),
    "unit_amount": (_DECIMAL, False),
    "package_size": (_DECIMAL, False),
    "package_amount": (_DECIMAL, False),
    "free_units": (_DECIMAL, False),
    "rate": (_DECIMAL, False),
    "fixed_amount": (_DECIMAL, False),
    "free_events": (_INTEGER, False),
    "free_amount": (_DECIMAL, False),
    "min_per_event": (_DECIMAL, False),
    "max_per_event": (_DECIMAL, False),
}
_TIER_COLUMNS: dict[str, tuple[str, bool]] = {
    "item_id": (_TEXT, True),
    "tier_no": (_INTEGER, True),
    "up_to": (_DECIMAL, False),
    "unit_amount": (_DECIMAL, False),
    "flat_amount": (_DECIMAL, False),
    "rate": (_DECIMAL, False),
}
_EVENT_COLUMNS: dict[str, tuple[str, bool]] = {
    "item_id": (_TEXT, True),
    "event_time": (_TIME, True),
    "event_order": (_TEXT, True),
    "amount": (_DECIMAL, True),
}
# The SQL type each kind is read as. Integers and decimals of scale ≤ 12 convert exactly.
_SQL_TYPE = {_DECIMAL: AMOUNT_TYPE, _INTEGER: "BIGINT", _TEXT: "VARCHAR", _TIME: "TIMESTAMPTZ"}
_INTEGER_TYPES = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
}  # fmt: skip
_DECIMAL_TYPE = re.compile(r"^DECIMAL\((\d+),(\d+)\)$")

# Rounding a product back to 12 decimals, as (p, q, scale) arguments of mc_half_even (see
# rating.currency). A price product is rounded half-even at the 12th decimal: exact
# whenever the true product has ≤ 12 decimals. A rate product, amount × rate in percent,
# is divided by 100 by rounding it at the 10th decimal and scaling it by 0.01: the
# DECIMAL(38,14) result has ≤ 12 decimals and casts back to DECIMAL(38,12) exactly.
_BY_PRICE = "CAST(1000000000000 AS HUGEINT), CAST(1 AS HUGEINT), CAST(1 AS DECIMAL(3,2))"
_RATE_PQ = "CAST(10000000000 AS HUGEINT), CAST(100 AS HUGEINT)"
_BY_RATE = f"{_RATE_PQ}, CAST(0.01 AS DECIMAL(3,2))"
_PRODUCT_TYPE = "DECIMAL(38,24)"  # DuckDB's type for DECIMAL(38,12) × DECIMAL(38,12)
_ZERO = f"CAST(0 AS {AMOUNT_TYPE})"

# The unscaled integer of a DECIMAL(38,12) (x × 10^12), split so that no step overflows.
_ARITHMETIC = """
CREATE OR REPLACE TEMP MACRO mc_unscaled(x) AS
    CAST(trunc(x) AS HUGEINT) * CAST(1000000000000 AS HUGEINT)
    + CAST((x - trunc(x)) * CAST(1000000000000 AS HUGEINT) AS HUGEINT);
"""


def _problem(field: str, value: str, expected: str) -> str:
    return (
        f"struct_pack(field := {field}, value := CAST({value} AS VARCHAR), expected := {expected})"
    )


# Problems in the inputs, so that a bad plan is reported by item and field instead of
# surfacing as a wrong amount: one CASE per input row (its first problem), then the first
# row by input, item and field. Tier ranges must be well formed for the range joins of
# _PRICE to pick exactly the tiers a quantity reaches (and exactly one, for volume).
_PROBLEMS = f"""
WITH tier_shape AS (
    SELECT t.*, i.model AS item_model,
        row_number() OVER w AS position,
        count(*) OVER (PARTITION BY t.item_id) AS tier_count,
        lag(t.up_to) OVER w AS previous_up_to
    FROM _mc_tiers t LEFT JOIN (SELECT DISTINCT item_id, model FROM _mc_items) i USING (item_id)
    WINDOW w AS (PARTITION BY t.item_id ORDER BY t.tier_no, t.up_to NULLS LAST)
), tiered AS (
    SELECT DISTINCT item_id FROM _mc_tiers
), problems AS (
    SELECT 'items' AS origin, item_id,
        {_problem("'item_id'", "item_id", "'present and unique'")} AS problem
    FROM _mc_items GROUP BY item_id HAVING item_id IS NULL OR count(*) > 1
    UNION ALL
    SELECT 'items', i.item_id, CASE
        WHEN i.model IS NULL OR i.model NOT IN {MODELS!r}
            THEN {_problem("'model'", "i.model", f"'one of {', '.join(MODELS)}'")}
        WHEN c.code IS NULL
            THEN {_problem("'currency'", "i.currency", "'an ISO 4217 currency code'")}
        -- Percentage items are priced from their events; their quantity is not used.
        WHEN i.model <> 'percentage' AND (i.quantity IS NULL OR i.quantity < 0)
            THEN {_problem("'quantity'", "i.quantity", "'a number ≥ 0'")}
        WHEN i.model = 'per_unit' AND i.unit_amount IS NULL
            THEN {_problem("'unit_amount'", "NULL", "'a number (per_unit)'")}
        WHEN i.model = 'package' AND (i.package_size IS NULL OR i.package_size <= 0)
            THEN {_problem("'package_size'", "i.package_size", "'a number > 0'")}
        WHEN i.model = 'package' AND i.package_amount IS NULL
            THEN {_problem("'package_amount'", "NULL", "'a number (package)'")}
        WHEN i.model = 'package' AND i.free_units < 0
            THEN {_problem("'free_units'", "i.free_units", "'a number ≥ 0'")}
        WHEN i.model = 'percentage' AND i.rate IS NULL
            THEN {_problem("'rate'", "NULL", "'a percentage (percentage)'")}
        WHEN i.model = 'percentage' AND i.free_events < 0
            THEN {_problem("'free_events'", "i.free_events", "'a count ≥ 0'")}
        WHEN i.model = 'percentage' AND i.free_amount < 0
            THEN {_problem("'free_amount'", "i.free_amount", "'a number ≥ 0'")}
        WHEN i.model = 'percentage' AND i.max_per_event < i.min_per_event
            THEN {
    _problem(
        "'max_per_event'",
        "i.max_per_event",
        "'not below min_per_event (' || CAST(i.min_per_event AS VARCHAR) || ')'",
    )
}
        WHEN i.model IN {TIERED_MODELS!r} AND t.item_id IS NULL
            THEN {_problem("'tiers'", "NULL", "'at least one tier (' || i.model || ')'")}
    END
    FROM _mc_items i
    LEFT JOIN _mc_currencies c ON c.code = i.currency
    LEFT JOIN tiered t ON t.item_id = i.item_id
    UNION ALL
    SELECT 'tiers', item_id, CASE
        WHEN item_model IS NULL OR item_model NOT IN {TIERED_MODELS!r}
            THEN {_problem("'item_id'", "item_id", "'an item of a tiered model'")}
        WHEN tier_no IS DISTINCT FROM position
            THEN {
    _problem("'tier_no'", "tier_no", "'tiers numbered 1, 2, 3 … without gaps or repeats'")
}
        WHEN position = tier_count AND up_to IS NOT NULL
            THEN {
    _problem("'tier ' || tier_no || ' up_to'", "up_to", "'null: the last tier is open'")
}
        WHEN position < tier_count AND (up_to IS NULL OR up_to <= 0)
            THEN {_problem("'tier ' || tier_no || ' up_to'", "up_to", "'a number > 0'")}
        WHEN position > 1 AND position < tier_count
             AND (previous_up_to IS NULL OR up_to <= previous_up_to)
            THEN {
    _problem(
        "'tier ' || tier_no || ' up_to'",
        "up_to",
        "'a number above the previous tier''s up_to ('"
        " || coalesce(CAST(previous_up_to AS VARCHAR), 'null') || ')'",
    )
}
        WHEN item_model = 'graduated_percentage' AND rate IS NULL
            THEN {
    _problem("'tier ' || tier_no || ' rate'", "NULL", "'a percentage (graduated_percentage)'")
}
        WHEN item_model IN ('graduated', 'volume') AND unit_amount IS NULL AND flat_amount IS NULL
            THEN {
    _problem(
        "'tier ' || tier_no || ' unit_amount'",
        "NULL",
        "'unit_amount or flat_amount (' || item_model || ')'",
    )
}
    END
    FROM tier_shape
    UNION ALL
    SELECT 'events', e.item_id, CASE
        WHEN i.model IS DISTINCT FROM 'percentage'
            THEN {_problem("'item_id'", "e.item_id", "'an item of the percentage model'")}
        WHEN e.event_time IS NULL
            THEN {_problem("'event_time'", "NULL", "'a timestamp'")}
        -- A negative amount (a refund) has no place in a cumulative free allowance.
        WHEN e.amount IS NULL OR e.amount < 0
            THEN {_problem("'amount'", "e.amount", "'a number ≥ 0'")}
    END
    FROM _mc_events e LEFT JOIN (SELECT DISTINCT item_id, model FROM _mc_items) i USING (item_id)
)
SELECT origin, item_id, problem.field, problem.value, problem.expected,
    count(*) OVER () AS problems
FROM problems
WHERE problem IS NOT NULL
ORDER BY origin DESC, item_id NULLS FIRST, problem.field
LIMIT 1
"""

_PRICE = f"""
WITH priced_items AS (
    -- item_no: a number for each item, cheaper than its id to partition events by.
    -- rate_e8: the rate × 10^8 as an integer, when the rate has at most 8 decimals.
    SELECT i.*, c.minor_units,
        CAST(c.pow10 AS HUGEINT) AS pow10, CAST(c.pow10_rest AS HUGEINT) AS pow10_rest,
        row_number() OVER (ORDER BY i.item_id) AS item_no,
        CASE WHEN i.model = 'percentage' AND abs(i.rate) < 1000000
              AND CAST(CAST(i.rate * 100000000 AS HUGEINT) AS DECIMAL(38,0))
                  * CAST(0.00000001 AS DECIMAL(9,8)) = i.rate
             THEN CAST(i.rate * 100000000 AS HUGEINT) END AS rate_e8
    FROM _mc_items i JOIN _mc_currencies c ON c.code = i.currency
), tier_ranges AS (
    -- Tier k holds the units in (up_to of tier k-1, up_to of tier k]; tier 1 starts at 0.
    -- Unset amounts are zero, so every branch below is DECIMAL(38,12) throughout: DuckDB
    -- gives a CASE or UNION mixing decimal scales the smallest scale, dropping digits.
    SELECT item_id, tier_no, up_to,
        coalesce(lag(up_to) OVER (PARTITION BY item_id ORDER BY tier_no), {_ZERO}) AS lower_bound,
        coalesce(unit_amount, {_ZERO}) AS unit_amount,
        coalesce(flat_amount, {_ZERO}) AS flat_amount,
        coalesce(rate, {_ZERO}) AS rate
    FROM _mc_tiers
), reached AS (
    -- A tier is reached when the quantity passes its lower bound. A quantity of 0 reaches
    -- the first tier, whose flat_amount is then charged (design.md, after Lago).
    SELECT i.item_id, i.model, i.quantity, t.tier_no, t.up_to, t.lower_bound,
        t.unit_amount, t.flat_amount, t.rate
    FROM priced_items i JOIN tier_ranges t USING (item_id)
    WHERE i.model IN {TIERED_MODELS!r} AND (t.tier_no = 1 OR i.quantity > t.lower_bound)
), graduated AS (
    SELECT item_id, model, tier_no, flat_amount, unit_amount, rate,
        CAST(least(quantity, coalesce(up_to, quantity)) - lower_bound AS {AMOUNT_TYPE}) AS units
    FROM reached WHERE model IN ('graduated', 'graduated_percentage')
), percentage_events AS (
    SELECT i.item_no, e.event_time, e.event_order, e.amount,
        coalesce(i.free_events, 0) > 0 OR coalesce(i.free_amount, 0) > 0 AS has_allowance,
        coalesce(i.free_events, 0) AS free_events,
        epoch_us(e.event_time) // 86400000000 AS day
    FROM _mc_events e JOIN priced_items i USING (item_id)
    WHERE i.model = 'percentage'
), allowance_ends AS (
    -- Order only matters inside an allowance. With a count of free events it can cover no
    -- more than the item's first free_events events, which lie in the days up to the one
    -- where the count is reached (counted per day: no sort of all the events). Without a
    -- count it can run over all of them.
    SELECT item_no, min(day) AS last_day
    FROM (
        SELECT item_no, day, free_events,
            sum(events) OVER (PARTITION BY item_no ORDER BY day) AS events_through
        FROM (
            SELECT item_no, day, any_value(free_events) AS free_events, count(*) AS events
            FROM percentage_events
            WHERE has_allowance AND free_events > 0
            GROUP BY item_no, day
        )
    )
    WHERE events_through >= free_events
    GROUP BY item_no
), zoned AS (
    SELECT p.item_no, p.event_time, p.event_order, p.amount,
        p.has_allowance
            AND (p.free_events = 0 OR a.last_day IS NULL OR p.day <= a.last_day) AS ordered
    FROM percentage_events p LEFT JOIN allowance_ends a USING (item_no)
), ordered_events AS (
    -- The order events are free in: by time, then the caller's tie-break; then amount, so
    -- that events tied on both (indistinguishable but for it) still price the same. The
    -- events ordered are a prefix of the item's events in that order, so their numbers
    -- and running amounts are the item's.
    SELECT item_no, event_no, amount,
        CAST(amount_through - amount AS {AMOUNT_TYPE}) AS amount_before
    FROM (
        SELECT item_no, amount,
            row_number() OVER w AS event_no,
            sum(amount) OVER (w ROWS UNBOUNDED PRECEDING) AS amount_through
        FROM zoned
        WHERE ordered
        WINDOW w AS (PARTITION BY item_no ORDER BY event_time, event_order, amount)
    )
), allowance AS (
    -- A free_events or free_amount of 0 is no allowance at all, as if unset; otherwise,
    -- with both, the allowance ends with whichever runs out first. Events past the
    -- allowance's reach pay in full, whatever their order: the same fee for the same
    -- amount, worked out once per amount (``events`` of them).
    SELECT e.item_no, e.amount, e.amount_before, i.rate, i.rate_e8, i.fixed_amount,
        i.min_per_event, i.max_per_event,
        nullif(i.free_amount, {_ZERO}) AS free_amount,
        (coalesce(i.free_events, 0) > 0 OR coalesce(i.free_amount, 0) > 0)
            AND (coalesce(i.free_events, 0) = 0 OR e.event_no <= i.free_events)
            AND (coalesce(i.free_amount, 0) = 0 OR e.amount_before < i.free_amount)
            AS in_allowance,
        1 AS events
    FROM ordered_events e JOIN priced_items i USING (item_no)
    UNION ALL
    SELECT z.item_no, z.amount, NULL, i.rate, i.rate_e8, i.fixed_amount, i.min_per_event,
        i.max_per_event, nullif(i.free_amount, {_ZERO}), false, z.events
    FROM (
        SELECT item_no, amount, count(*) AS events FROM zoned WHERE NOT ordered
        GROUP BY item_no, amount
    ) z
    JOIN priced_items i USING (item_no)
), chargeable AS (
    -- Inside the allowance an event is free up to what is left of free_amount (all of it
    -- when only free_events is set); the rate applies to the rest, the part above.
    SELECT item_no, rate, rate_e8, fixed_amount, min_per_event, max_per_event, in_allowance,
        events,
        CAST(CASE
            WHEN NOT in_allowance THEN amount
            WHEN free_amount IS NULL THEN {_ZERO}
            ELSE greatest(amount_before + amount - free_amount, {_ZERO})
        END AS {AMOUNT_TYPE}) AS chargeable
    FROM allowance
), event_fees AS (
    -- A wholly free event pays nothing; any other pays rate on its chargeable part plus
    -- the fixed fee (the crossing event too), clamped to [min_per_event, max_per_event].
    -- A chargeable amount in whole cents times a rate of at most 8 decimals has at most
    -- 10 decimals in percent: the rounding at the 10th changes nothing, and the fee is
    -- worked out in integers (cents × rate_e8, in units of 10^-12), exactly and without
    -- the 128-bit divisions rounding takes. The cents come from a DOUBLE but are only used
    -- once checked exact; anything else, and products too large for DECIMAL(38,24) (which
    -- raise there), takes the rounding.
    SELECT item_no, min_per_event, max_per_event, events,
        NOT (in_allowance AND chargeable = 0) AS paid,
        CAST(CASE
            WHEN rate_e8 IS NOT NULL AND abs(chargeable) < 1000000000000000
             AND CAST(cents AS DECIMAL(38,0)) * CAST(0.01 AS DECIMAL(3,2)) = chargeable
             AND abs(cents * rate_e8) < CAST(100000000000000000000000000 AS HUGEINT)
                THEN CAST(CAST(cents * rate_e8 AS DECIMAL(38,0)) * {ONE_E_MINUS_12}
                          AS {AMOUNT_TYPE})
            ELSE CAST(mc_half_even(chargeable * rate, {_RATE_PQ}, false)
                      * CAST(0.01 AS DECIMAL(3,2)) AS {AMOUNT_TYPE})
        END + coalesce(fixed_amount, {_ZERO}) AS {AMOUNT_TYPE}) AS fee
    FROM (
        SELECT *, CAST(round(CAST(chargeable AS DOUBLE) * 100) AS HUGEINT) AS cents
        FROM chargeable
    )
), clamped AS (
    SELECT item_no, paid, events,
        CAST(CASE
            WHEN NOT paid THEN {_ZERO}
            WHEN max_per_event IS NOT NULL
             AND greatest(fee, coalesce(min_per_event, fee)) > max_per_event THEN max_per_event
            ELSE greatest(fee, coalesce(min_per_event, fee))
        END AS {AMOUNT_TYPE}) AS fee
    FROM event_fees
), percentage AS (
    SELECT i.item_id,
        CAST(coalesce(sum(c.events) FILTER (WHERE c.paid), 0) AS {AMOUNT_TYPE}) AS paid_events,
        CAST(coalesce(sum(c.fee * c.events), 0) AS {AMOUNT_TYPE}) AS fees
    FROM priced_items i LEFT JOIN clamped c USING (item_no)
    WHERE i.model = 'percentage'
    GROUP BY i.item_id
), packages AS (
    -- Billable units after the free ones, up to whole packages: a ceiling division on the
    -- unscaled integers (a DECIMAL division would be a DOUBLE in DuckDB).
    SELECT item_id, package_amount,
        CAST((mc_unscaled(billable) + mc_unscaled(package_size) - 1)
             // mc_unscaled(package_size) AS DECIMAL(38,0)) AS packages
    FROM (
        SELECT item_id, package_size, package_amount,
            greatest(quantity - coalesce(free_units, {_ZERO}), {_ZERO}) AS billable
        FROM priced_items WHERE model = 'package'
    )
), products AS (
    -- One row per breakdown line: its exact product (units × price, or amount × rate in
    -- percent) and how to bring that back to 12 decimals, plus its flat amount.
    SELECT item_id, tier_no, units, unit_amount, flat_amount,
        CAST(units * unit_amount AS {_PRODUCT_TYPE}) AS product, {_BY_PRICE}
    FROM graduated WHERE model = 'graduated'
    UNION ALL
    -- graduated_percentage: unit_amount holds the tier's rate, in percent.
    SELECT item_id, tier_no, units, rate, flat_amount,
        CAST(units * rate AS {_PRODUCT_TYPE}), {_BY_RATE}
    FROM graduated WHERE model = 'graduated_percentage'
    UNION ALL
    -- volume: the one tier the total falls in prices every unit.
    SELECT item_id, tier_no, quantity, unit_amount, flat_amount,
        CAST(quantity * unit_amount AS {_PRODUCT_TYPE}), {_BY_PRICE}
    FROM reached WHERE model = 'volume' AND (up_to IS NULL OR quantity <= up_to)
    UNION ALL
    SELECT item_id, 1, quantity, unit_amount, {_ZERO},
        CAST(quantity * unit_amount AS {_PRODUCT_TYPE}), {_BY_PRICE}
    FROM priced_items WHERE model = 'per_unit'
    UNION ALL
    -- package: units are whole packages, at package_amount each (an exact product).
    SELECT item_id, 1, CAST(packages AS {AMOUNT_TYPE}), package_amount, {_ZERO},
        CAST(packages * package_amount AS {_PRODUCT_TYPE}), {_BY_PRICE}
    FROM packages
    UNION ALL
    -- percentage: units are the paid events; their fees differ event by event, so no
    -- single unit or flat amount describes them (both NULL); the fees are already exact.
    SELECT item_id, 1, paid_events, CAST(NULL AS {AMOUNT_TYPE}), CAST(NULL AS {AMOUNT_TYPE}),
        CAST(fees AS {_PRODUCT_TYPE}), {_BY_PRICE}
    FROM percentage
), breakdown_rows AS (
    SELECT item_id, tier_no, units, unit_amount, flat_amount,
        CAST(mc_half_even(product, p, q, false) * scale + coalesce(flat_amount, {_ZERO})
             AS {AMOUNT_TYPE}) AS amount
    FROM products AS r(item_id, tier_no, units, unit_amount, flat_amount, product, p, q, scale)
), totals AS (
    SELECT item_id,
        CAST(sum(amount) AS {AMOUNT_TYPE}) AS amount_precise,
        list(struct_pack(
            tier_no := CAST(tier_no AS INTEGER),
            units := CAST(units AS {AMOUNT_TYPE}),
            unit_amount := CAST(unit_amount AS {AMOUNT_TYPE}),
            flat_amount := CAST(flat_amount AS {AMOUNT_TYPE}),
            amount := amount
        ) ORDER BY tier_no) AS breakdown
    FROM breakdown_rows
    GROUP BY item_id
)
SELECT i.item_id, t.amount_precise,
    -- Rounded once, at the end, to the minor unit: half-even (DuckDB's round() is not).
    mc_half_even(t.amount_precise, i.pow10, i.pow10_rest, i.minor_units = 0) AS amount,
    t.breakdown
FROM priced_items i JOIN totals t USING (item_id)
ORDER BY i.item_id
"""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _normalise(
    con: duckdb.DuckDBPyConnection,
    role: str,
    source: str | None,
    columns: dict[str, tuple[str, bool]],
) -> None:
    """Temp view ``_mc_<role>`` over ``source`` with exactly ``columns``, in their SQL types.

    Columns must already hold exact values: a float column, or a decimal with more than
    12 decimals, is refused here rather than silently rounded by the cast.
    """
    view = f"_mc_{role}"
    if source is None:
        select = ", ".join(
            f"CAST(NULL AS {_SQL_TYPE[kind]}) AS {name}" for name, (kind, _) in columns.items()
        )
        con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {select} WHERE false")
        return
    relation = con.sql(f"SELECT * FROM {_quote(source)} LIMIT 0")
    present = {
        name: str(dtype).upper()
        for name, dtype in zip(relation.columns, relation.dtypes, strict=True)
    }
    parts = []
    for name, (kind, required) in columns.items():
        if name not in present:
            if required:
                raise ReferenceDataError(role, name, None, "a required column is missing")
            parts.append(f"CAST(NULL AS {_SQL_TYPE[kind]}) AS {name}")
            continue
        dtype = present[name]
        if not _accepts(kind, dtype):
            raise ReferenceDataError(
                role, name, dtype, f"a column convertible exactly to {_SQL_TYPE[kind]}"
            )
        parts.append(f"CAST({_quote(name)} AS {_SQL_TYPE[kind]}) AS {name}")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {', '.join(parts)} FROM {_quote(source)}"
    )


def _accepts(kind: str, dtype: str) -> bool:
    if dtype == '"NULL"' or dtype == "NULL":
        return True
    if kind == _TEXT:
        return dtype == "VARCHAR"
    if kind == _TIME:
        return dtype.startswith("TIMESTAMP")
    if dtype in _INTEGER_TYPES:
        return True
    match = _DECIMAL_TYPE.match(dtype)
    if kind == _DECIMAL and match is not None:
        # More integer digits than DECIMAL(38,12) holds is fine: the cast fails loudly on a
        # value that does not fit. More decimals would be rounded by it, silently.
        return int(match.group(2)) <= 12
    return False


def price_items(
    con: duckdb.DuckDBPyConnection,
    items: str = "items",
    tiers: str | None = "tiers",
    events: str | None = "events",
) -> pa.Table:
    """Price every row of relation ``items`` (with its ``tiers`` and ``events``) on ``con``.

    ``items``, ``tiers`` and ``events`` name relations (registered Arrow tables, views,
    tables) on ``con``; ``None`` stands for an empty one. Returns item_id, amount_precise,
    amount and breakdown (see ``RESULT_SCHEMA``), ordered by item_id. Raises
    ``ReferenceDataError`` (a ValueError) naming the input (items, tiers or events), item
    and field of the first problem found. Leaves temp views ``_mc_*`` and macros ``mc_*``
    on ``con``.
    """
    install_rounding(con)
    con.execute(_ARITHMETIC)
    con.register("_mc_currencies", currency_table())
    _normalise(con, "items", items, _ITEM_COLUMNS)
    _normalise(con, "tiers", tiers, _TIER_COLUMNS)
    _normalise(con, "events", events, _EVENT_COLUMNS)
    # execute, not sql: a relation would plan the statement twice (to bind, then to run).
    problem = con.execute(_PROBLEMS).fetchall()
    if problem:
        origin, item_id, field, value, expected, count = problem[0]
        more = f" ({count - 1} more problems)" if count > 1 else ""
        raise ReferenceDataError(origin, f"item {item_id!r} {field}", value, expected + more)
    result = con.sql(_PRICE).to_arrow_table()
    return result.cast(RESULT_SCHEMA)


def price(
    items: pa.Table,
    tiers: pa.Table | None = None,
    events: pa.Table | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """``price_items`` over Arrow tables, registered on ``con`` (a fresh in-memory one if None)."""
    own = con is None
    connection = duckdb.connect() if con is None else con
    try:
        names: dict[str, str | None] = {}
        for key, table in (("items", items), ("tiers", tiers), ("events", events)):
            names[key] = None if table is None else f"_mc_in_{key}"
            if table is not None:
                connection.register(f"_mc_in_{key}", table)
        return price_items(
            connection,
            items="_mc_in_items",
            tiers=names["tiers"],
            events=names["events"],
        )
    finally:
        if own:
            connection.close()


__all__: Sequence[str] = ("MODELS", "RESULT_SCHEMA", "price", "price_items")
