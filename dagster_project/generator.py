"""Deterministic generator of meterclose's sample data: reference data and CloudEvents telemetry.

``generate(out_dir, months, events_per_month, seed)`` writes, under ``out_dir``::

    reference/meters.yaml      the meters (OpenMeter style): slug, event_type, aggregation, ...
    reference/entities.csv     legal entities with functional currency and ERP subsidiary
    reference/customers.csv    ~200 customers; heavy-tailed sizes, some billed cross-currency
    reference/products.csv     products with product family and business unit
    reference/plans.yaml       price plans in USD, EUR, GBP, JPY using every pricing model
    reference/contracts.yaml   contracts with amendments, prepaid credit, commitments, add-ons
    reference/credits.csv      SLA credits
    reference/accounts.yaml    accounts per entity and role, revenue by product family
    reference/fx_rates.csv     daily rates (customer currency -> functional currency)
    landing/usage/YYYY-MM-DD/events-NN.ndjson[.gz]   CloudEvents 1.0, one JSON object a line
    manifest/lines.parquet     the expected ingest outcome of every landing line
    manifest/summary.json      counts per fault, outcome and reason, per month and overall

The manifest predicts, line by line, what the ingest must decide (``outcome``: accepted,
duplicate or quarantined, with a ``reason`` code) and records which fault was injected
(``fault``). Its rules, applied in order, first failing rule wins: invalid_encoding,
empty_line, invalid_json, not_an_object, missing_field, invalid_field, unknown_event_type,
too_late, future_time, invalid_value, negative_value, unknown_customer; among valid lines the
first arrival of a (source, id) pair, by landing day, file name and line number, is accepted
and later copies are duplicates.

Every month gets exactly ``events_per_month`` base events whose event_time falls in the month;
they are all accepted (so the accepted lines of a month equal ``events_per_month``).
Duplicate copies and quarantine faults come on top. ``months[M]`` in the summary counts the
lines generated for month M (base events by their event month, faults by the month they were
injected for); ``landing_months`` counts lines by the month they landed in.

Everything random comes from one ``numpy.random.default_rng(seed)``, consumed in a fixed
order, so the same arguments give byte-identical files: gzip members carry mtime 0 and no
file name, the Parquet manifest is written in a fixed order and the summary with sorted keys.
Lines are built vectorised (numpy -> Arrow -> Polars string expressions), one event day at a
time; events that land on a later day wait in a small buffer until their landing day.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
import struct
import zlib
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from copy import deepcopy
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

__all__ = ["FAULTS", "FAULT_REASONS", "LINE_FAULTS", "OUTCOMES", "UNKNOWN_CUSTOMERS", "generate"]

MS_PER_DAY = 86_400_000
EPOCH = date(1970, 1, 1)
TAIL_DAYS = 5  # landing days after the last month (late events of the last month land there)
NAT_LAG_P = 0.04  # share of base events landing 1-3 days after their event day
DUP_RATE = 0.01
LATE_RATE = 0.002
FAULT_RATE = 0.0005
ROW_GROUP_ROWS = 1_000_000
GZIP_LEVEL = 6

OUTCOMES = ("accepted", "duplicate", "quarantined")
FAULTS = (
    "none",
    "duplicate_same_day",
    "duplicate_later_day",
    "late_event",
    "invalid_json",
    "invalid_encoding",
    "empty_line",
    "missing_field",
    "mistyped_field",
    "negative_quantity",
    "unknown_event_type",
    "unknown_customer",
    "future_time",
    "too_late",
    "not_an_object",
)
# Quarantine faults injected as fresh lines, ~FAULT_RATE each per month (too_late may instead be
# a re-sent copy of an old event).
LINE_FAULTS = (
    "invalid_json",
    "invalid_encoding",
    "empty_line",
    "missing_field",
    "mistyped_field",
    "negative_quantity",
    "unknown_event_type",
    "unknown_customer",
    "future_time",
    "not_an_object",
)
# Expected reason per fault (mistyped_field is invalid_field for envelope fields and
# invalid_value for the meter's value property; see the manifest's reason column).
FAULT_REASONS: dict[str, list[str]] = {
    "none": [],
    "duplicate_same_day": [],
    "duplicate_later_day": [],
    "late_event": [],
    "invalid_json": ["invalid_json"],
    "invalid_encoding": ["invalid_encoding"],
    "empty_line": ["empty_line"],
    "missing_field": ["missing_field"],
    "mistyped_field": ["invalid_field", "invalid_value"],
    "negative_quantity": ["negative_value"],
    "unknown_event_type": ["unknown_event_type"],
    "unknown_customer": ["unknown_customer"],
    "future_time": ["future_time"],
    "too_late": ["too_late"],
    "not_an_object": ["not_an_object"],
}
UNKNOWN_CUSTOMERS = ("CUST-9001", "CUST-9002")

# --------------------------------------------------------------------------- meters / events

METERS: list[dict[str, Any]] = [
    {
        "slug": "api_calls",
        "event_type": "api.request",
        "aggregation": "COUNT",
        "group_by": {"region": "$.region"},
    },
    {
        "slug": "tokens",
        "event_type": "llm.completion",
        "aggregation": "SUM",
        "value_property": "$.tokens",
        "group_by": {"model": "$.model"},
    },
    {
        "slug": "llm_requests",
        "event_type": "llm.completion",
        "aggregation": "COUNT",
        "group_by": {},
    },
    {
        "slug": "active_users",
        "event_type": "user.active",
        "aggregation": "UNIQUE_COUNT",
        "value_property": "$.user_id",
        "group_by": {},
    },
    {
        "slug": "storage_gb",
        "event_type": "storage.usage",
        "aggregation": "MAX",
        "value_property": "$.gb",
        "group_by": {},
    },
    {
        "slug": "seats",
        "event_type": "seats.snapshot",
        "aggregation": "LATEST",
        "value_property": "$.seats",
        "group_by": {},
    },
    {
        "slug": "payment_volume",
        "event_type": "payment.captured",
        "aggregation": "SUM",
        "value_property": "$.amount",
        "group_by": {},
    },
    {"slug": "payments", "event_type": "payment.captured", "aggregation": "COUNT", "group_by": {}},
]
TYPES = (
    "api.request",
    "llm.completion",
    "user.active",
    "storage.usage",
    "seats.snapshot",
    "payment.captured",
)
T_API, T_LLM, T_USER, T_STORAGE, T_SEATS, T_PAY = range(6)
TYPE_P = np.array([0.50, 0.25, 0.12, 0.03, 0.02, 0.08])
TYPE_ALPHA = np.array([1.0, 1.0, 0.8, 0.3, 0.3, 1.0])  # exponent on customer size per type
METER_COUNT = np.array([sum(m["event_type"] == t for m in METERS) for t in TYPES], dtype=np.int64)
VALUE_FIELD = {
    T_LLM: "tokens",
    T_USER: "user_id",
    T_STORAGE: "gb",
    T_SEATS: "seats",
    T_PAY: "amount",
}
TYPE_METERS = {t: {m["slug"] for m in METERS if m["event_type"] == t} for t in TYPES}

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1", "us-west-2")
SOURCES = tuple(f"//ingest.example.com/{r}" for r in REGIONS)
ENDPOINTS = (
    "/v1/search",
    "/v1/documents",
    "/v1/embeddings",
    "/v1/users",
    "/v1/export",
    "/v1/webhooks",
)
ENDPOINT_P = np.array([0.35, 0.25, 0.15, 0.12, 0.05, 0.08])
STATUSES = ("200", "201", "400", "429", "500")
STATUS_P = np.array([0.90, 0.04, 0.03, 0.02, 0.01])
MODELS = ("small", "medium", "large")
MODEL_P = np.array([0.55, 0.30, 0.15])

# --------------------------------------------------------------------------- reference data

ENTITIES = (
    ("US01", "Meterclose Inc.", "USD", "1"),
    ("EU01", "Meterclose B.V.", "EUR", "2"),
    ("UK01", "Meterclose Ltd", "GBP", "3"),
    ("JP01", "Meterclose K.K.", "JPY", "4"),
)
ENTITY_COLUMNS = ["entity_id", "name", "functional_currency", "erp_subsidiary"]
PRODUCT_COLUMNS = ["product_id", "name", "product_family", "business_unit", "department"]
ENTITY_P = np.array([0.50, 0.25, 0.15, 0.10])
ENTITY_COUNTRIES = {
    "US01": ("US", "US", "US", "CA"),
    "EU01": ("DE", "FR", "NL", "ES", "IE"),
    "UK01": ("GB",),
    "JP01": ("JP",),
}
ENTITY_REGION = {"US01": 0, "EU01": 1, "UK01": 1, "JP01": 2}
CURRENCY_DECIMALS = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0}
USD_PER = {"USD": Decimal("1"), "EUR": Decimal("0.9"), "GBP": Decimal("0.8"), "JPY": Decimal("150")}
FX_BASE = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 148.5}  # units of currency per 1 USD
N_CUSTOMERS = 200

PRODUCTS = (
    ("platform", "Platform subscription", "platform", "Core Platform", "Sales"),
    ("support", "Premium support", "support", "Services", "Customer Success"),
    ("seats", "Seat licences", "seats", "Core Platform", "Sales"),
    ("api", "API requests", "api", "Developer Platform", "Self-Serve"),
    ("ai-tokens", "LLM tokens", "ai", "AI", "Self-Serve"),
    ("ai-requests", "LLM requests", "ai", "AI", "Self-Serve"),
    ("active-users", "Monthly active users", "platform", "Core Platform", "Sales"),
    ("storage", "Storage", "storage", "Infrastructure", "Self-Serve"),
    ("payments", "Payment processing", "payments", "Payments", "Self-Serve"),
)
ACCOUNTS = {
    "receivable": "1100",
    "unbilled_receivable": "1150",
    "deferred_revenue": "2300",
    "contract_liability": "2350",
    "fx_gain_loss": "7100",
    "rounding": "7190",
    "breakage": "4900",
    "revenue": {
        "platform": "4000",
        "api": "4100",
        "ai": "4200",
        "storage": "4300",
        "seats": "4400",
        "payments": "4500",
        "support": "4600",
    },
}
NAME_A = (
    "Acme",
    "Blue",
    "Cedar",
    "Delta",
    "Ember",
    "Falcon",
    "Granite",
    "Harbor",
    "Iris",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Maple",
    "Nimbus",
    "Orchid",
    "Pioneer",
    "Quartz",
    "Raven",
    "Summit",
    "Tidal",
    "Umber",
    "Vertex",
    "Willow",
    "Xenon",
    "Yarrow",
    "Zephyr",
)
NAME_B = (
    "Analytics",
    "Labs",
    "Systems",
    "Health",
    "Logistics",
    "Media",
    "Robotics",
    "Finance",
    "Retail",
    "Energy",
    "Networks",
    "Foods",
    "Mobility",
    "Studios",
    "Security",
    "Bio",
)
NAME_C = ("Inc.", "GmbH", "Ltd", "B.V.", "K.K.", "SAS", "LLC", "S.L.")
ENTITY_SUFFIX = {
    "US01": ("Inc.", "LLC"),
    "EU01": ("GmbH", "B.V.", "SAS", "S.L."),
    "UK01": ("Ltd",),
    "JP01": ("K.K.",),
}


def _d(day: int) -> date:
    return EPOCH + timedelta(days=int(day))


def _n(d: date) -> int:
    return (d - EPOCH).days


def _month_bounds(month: str) -> tuple[int, int]:
    """First and last day (days since epoch) of a YYYY-MM month."""
    try:
        y, m = (int(p) for p in month.split("-"))
        first = date(y, m, 1)
    except ValueError:
        raise ValueError(f"month {month!r}: expected YYYY-MM") from None
    if f"{y:04d}-{m:02d}" != month:
        raise ValueError(f"month {month!r}: expected YYYY-MM")
    return _n(first), _n(first) + calendar.monthrange(y, m)[1] - 1


def _money(usd: str, cur: str) -> str:
    """A USD price converted to a round amount in `cur` (JPY without decimals)."""
    v = Decimal(usd) * USD_PER[cur]
    q = Decimal(1).scaleb(-CURRENCY_DECIMALS[cur])
    return str(v.quantize(q, rounding=ROUND_HALF_EVEN))


def _unit(usd: str, cur: str) -> str:
    """A (possibly sub-cent) unit price converted to `cur`, keeping its precision."""
    d = Decimal(usd)
    v = d * USD_PER[cur]
    places = max(-d.as_tuple().exponent, 2)
    return str(v.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN))


def _plans() -> list[dict[str, Any]]:
    """The price plans. Together they use every pricing model and option."""

    def rec(charge_id, product_id, amount, interval, quantity=None):
        r = {
            "charge_id": charge_id,
            "product_id": product_id,
            "amount": amount,
            "interval": interval,
        }
        if quantity is not None:
            r["quantity"] = quantity
        return r

    def use(charge_id, meter, product_id, model, **kw):
        u = {"charge_id": charge_id, "meter": meter, "product_id": product_id, "model": model}
        u.update(kw)
        return u

    def tier(up_to, unit_amount=None, flat_amount="0", rate=None):
        t: dict[str, Any] = {"up_to": up_to}
        if rate is not None:
            t["rate"] = rate
        else:
            t["unit_amount"] = unit_amount
        t["flat_amount"] = flat_amount
        return t

    plans: list[dict[str, Any]] = []
    for cur in ("USD", "GBP"):
        m, u = (lambda x, c=cur: _money(x, c)), (lambda x, c=cur: _unit(x, c))
        plans.append(
            {
                "plan_id": f"starter-{cur.lower()}",
                "name": f"Starter ({cur})",
                "currency": cur,
                "recurring": [rec("platform", "platform", m("49"), "month")],
                "usage": [
                    use(
                        "api-calls",
                        "api_calls",
                        "api",
                        "per_unit",
                        unit_amount=u("0.0005"),
                        included_units="20000",
                    ),
                    use(
                        "storage",
                        "storage_gb",
                        "storage",
                        "package",
                        package_size="50",
                        package_amount=m("5"),
                        free_units="10",
                    ),
                    use(
                        "active-users",
                        "active_users",
                        "active-users",
                        "per_unit",
                        unit_amount=m("1.5"),
                        included_units="25",
                    ),
                ],
            }
        )
    for cur in ("USD", "EUR", "GBP"):
        m, u = (lambda x, c=cur: _money(x, c)), (lambda x, c=cur: _unit(x, c))
        payment = (
            use(
                "payment-fees",
                "payment_volume",
                "payments",
                "graduated_percentage",
                tiers=[tier("100000", rate="2.5"), tier(None, rate="1.9", flat_amount=m("50"))],
            )
            if cur == "GBP"
            else use(
                "payment-fees",
                "payment_volume",
                "payments",
                "percentage",
                rate="2.9",
                fixed_amount=m("0.30"),
                free_events="25",
                min_per_event=m("0.50"),
                max_per_event=m("40"),
            )
        )
        plans.append(
            {
                "plan_id": f"growth-{cur.lower()}",
                "name": f"Growth ({cur})",
                "currency": cur,
                "recurring": [
                    rec("platform", "platform", m("1200"), "month"),
                    rec("seats-fee", "seats", m("25"), "month", quantity="10"),
                ],
                "usage": [
                    use(
                        "api-calls",
                        "api_calls",
                        "api",
                        "graduated",
                        tiers=[
                            tier("100000", u("0.0010")),
                            tier("1000000", u("0.0006")),
                            tier(None, u("0.0003")),
                        ],
                        included_units="10000",
                    ),
                    use(
                        "tokens",
                        "tokens",
                        "ai-tokens",
                        "graduated",
                        group_by=["model"],
                        tiers=[tier("1000000", u("0.000004")), tier(None, u("0.000002"))],
                        minimum_amount=m("100"),
                    ),
                    use(
                        "llm-requests",
                        "llm_requests",
                        "ai-requests",
                        "per_unit",
                        unit_amount=u("0.0010"),
                    ),
                    use(
                        "active-users",
                        "active_users",
                        "active-users",
                        "per_unit",
                        unit_amount=m("2.5"),
                    ),
                    use(
                        "storage",
                        "storage_gb",
                        "storage",
                        "per_unit",
                        unit_amount=m("0.10"),
                        included_units="100",
                    ),
                    payment,
                ],
            }
        )
    for cur in ("USD", "EUR"):
        m, u = (lambda x, c=cur: _money(x, c)), (lambda x, c=cur: _unit(x, c))
        payment = (
            use(
                "payment-fees",
                "payment_volume",
                "payments",
                "graduated_percentage",
                tiers=[tier("100000", rate="2.5"), tier(None, rate="1.9", flat_amount=m("50"))],
            )
            if cur == "USD"
            else use(
                "payment-fees",
                "payment_volume",
                "payments",
                "percentage",
                rate="1.4",
                fixed_amount=m("0.25"),
                free_events="100",
                free_amount=m("5000"),
                max_per_event=m("15"),
            )
        )
        plans.append(
            {
                "plan_id": f"scale-{cur.lower()}",
                "name": f"Scale ({cur})",
                "currency": cur,
                "recurring": [
                    rec("platform", "platform", m("36000"), "year"),
                    rec("support", "support", m("750"), "month"),
                ],
                "usage": [
                    use(
                        "api-calls",
                        "api_calls",
                        "api",
                        "volume",
                        tiers=[
                            tier("1000000", u("0.0008")),
                            tier("10000000", u("0.0005"), m("100")),
                            tier(None, u("0.0003"), m("250")),
                        ],
                        minimum_amount=m("500"),
                    ),
                    use(
                        "tokens",
                        "tokens",
                        "ai-tokens",
                        "volume",
                        group_by=["model"],
                        tiers=[tier("5000000", u("0.0000030")), tier(None, u("0.0000015"))],
                    ),
                    use(
                        "llm-requests",
                        "llm_requests",
                        "ai-requests",
                        "package",
                        package_size="1000",
                        package_amount=m("0.80"),
                        free_units="1000",
                    ),
                    use("seats", "seats", "seats", "per_unit", unit_amount=m("18")),
                    use(
                        "storage",
                        "storage_gb",
                        "storage",
                        "per_unit",
                        unit_amount=u("0.08"),
                        included_units="100",
                    ),
                    payment,
                    use(
                        "payment-count",
                        "payments",
                        "payments",
                        "per_unit",
                        unit_amount=u("0.05"),
                        included_units="1000",
                    ),
                ],
            }
        )
    plans.append(
        {
            "plan_id": "growth-jpy",
            "name": "Growth (JPY)",
            "currency": "JPY",
            "recurring": [
                rec("platform", "platform", "180000", "month"),
                rec("seats-fee", "seats", "3000", "month", quantity="10"),
            ],
            "usage": [
                use(
                    "api-calls",
                    "api_calls",
                    "api",
                    "package",
                    package_size="1000",
                    package_amount="150",
                    free_units="10000",
                ),
                use(
                    "tokens",
                    "tokens",
                    "ai-tokens",
                    "package",
                    group_by=["model"],
                    package_size="1000000",
                    package_amount="600",
                    free_units="0",
                    minimum_amount="15000",
                ),
                use(
                    "active-users",
                    "active_users",
                    "active-users",
                    "per_unit",
                    unit_amount="300",
                    included_units="10",
                ),
                use(
                    "payment-fees",
                    "payment_volume",
                    "payments",
                    "percentage",
                    rate="3.6",
                    fixed_amount="40",
                    free_events="10",
                    free_amount="100000",
                    min_per_event="50",
                    max_per_event="5000",
                ),
            ],
        }
    )
    plans.append(
        {
            "plan_id": "scale-jpy",
            "name": "Scale (JPY)",
            "currency": "JPY",
            "recurring": [
                rec("platform", "platform", "5000000", "year"),
                rec("support", "support", "100000", "month"),
            ],
            "usage": [
                use(
                    "api-calls",
                    "api_calls",
                    "api",
                    "volume",
                    tiers=[tier("1000000", "1"), tier(None, "0", "1000000")],
                ),
                use(
                    "llm-requests",
                    "llm_requests",
                    "ai-requests",
                    "graduated",
                    tiers=[tier("10000", "0", "5000"), tier(None, "1")],
                ),
                use(
                    "tokens",
                    "tokens",
                    "ai-tokens",
                    "per_unit",
                    unit_amount="0",
                    minimum_amount="30000",
                ),
                use("seats", "seats", "seats", "per_unit", unit_amount="2500"),
                use(
                    "storage",
                    "storage_gb",
                    "storage",
                    "volume",
                    tiers=[tier("1000", "15"), tier(None, "10", "5000")],
                ),
                use(
                    "payment-fees",
                    "payment_volume",
                    "payments",
                    "graduated_percentage",
                    tiers=[
                        tier("10000000", rate="3.0"),
                        tier(None, rate="2.4", flat_amount="10000"),
                    ],
                ),
            ],
        }
    )
    plans.append(
        {
            "plan_id": "addon-usd",
            "name": "Sandbox add-on (USD)",
            "currency": "USD",
            "recurring": [
                rec("support", "support", "300.00", "month"),
                rec("sandbox", "platform", "1200.00", "year", quantity="2"),
            ],
            "usage": [],
        }
    )
    return plans


UPGRADES = {
    "starter-usd": "growth-usd",
    "growth-usd": "scale-usd",
    "starter-gbp": "growth-gbp",
    "growth-eur": "scale-eur",
    "growth-jpy": "scale-jpy",
}


class _Reference:
    """Reference data, plus the per-customer arrays the event generator draws from."""

    def __init__(self, rng: np.random.Generator, month_days: list[tuple[int, int]]):
        self.rng = rng
        self.first_day = month_days[0][0]
        self.last_day = month_days[-1][1]
        self.month_days = month_days
        self.plans = _plans()
        self.plan_by_id = {p["plan_id"]: p for p in self.plans}
        self._customers()
        self._contracts()
        self._credits()
        self._event_arrays()

    # -- customers
    def _customers(self) -> None:
        rng = self.rng
        n = N_CUSTOMERS
        ent_idx = rng.choice(len(ENTITIES), size=n, p=ENTITY_P)
        # a few guaranteed cross-currency customers and JPY customers
        ent_idx[:3] = [1, 3, 2]
        cross = rng.random(n) < 0.08
        cross[:3] = True
        ent_idx[3:6] = 3
        self.customers: list[dict[str, str]] = []
        used_names: set[str] = set()
        rank = rng.permutation(n) + 1
        self.size_w = (1.0 / rank**1.1) * rng.pareto(3.0, n).clip(0, 3) + 1e-4 / rank
        for i in range(n):
            eid, _, fcur, _ = ENTITIES[ent_idx[i]]
            cur = "USD" if (cross[i] and eid != "US01") else fcur
            base = f"{NAME_A[rng.integers(len(NAME_A))]} {NAME_B[rng.integers(len(NAME_B))]}"
            name = f"{base} {ENTITY_SUFFIX[eid][rng.integers(len(ENTITY_SUFFIX[eid]))]}"
            k = 2
            while name in used_names:
                name = f"{base} {k} {ENTITY_SUFFIX[eid][0]}"
                k += 1
            used_names.add(name)
            countries = ENTITY_COUNTRIES[eid]
            self.customers.append(
                {
                    "customer_id": f"CUST-{i + 1:04d}",
                    "name": name,
                    "entity_id": eid,
                    "currency": cur,
                    "country": countries[rng.integers(len(countries))],
                }
            )

    # -- contracts
    def _rand_mid_month(self, lo_day: int = 10, hi_day: int = 20) -> int:
        first, last = self.month_days[self.rng.integers(len(self.month_days))]
        return first + int(self.rng.integers(lo_day - 1, min(hi_day, last - first + 1)))

    def _contracts(self) -> None:
        rng = self.rng
        n = N_CUSTOMERS
        order = np.argsort(-self.size_w, kind="stable")
        size_rank = np.empty(n, dtype=np.int64)
        size_rank[order] = np.arange(n)
        plan_of: list[str] = []
        for i, c in enumerate(self.customers):
            cur = c["currency"].lower()
            tier = (
                "scale"
                if size_rank[i] < 0.15 * n
                else "growth"
                if size_rank[i] < 0.6 * n
                else "starter"
            )
            pid = f"{tier}-{cur}"
            if pid not in self.plan_by_id:  # every currency has a growth plan
                pid = f"growth-{cur}"
            plan_of.append(pid)
        contracts: list[dict[str, Any]] = []
        for i, c in enumerate(self.customers):
            start = self.first_day - int(rng.integers(30, 700))
            start = _n(_d(start).replace(day=1)) if rng.random() < 0.5 else start
            contracts.append(
                {
                    "contract_id": f"C-{i + 1:04d}",
                    "customer_id": c["customer_id"],
                    "plan_id": plan_of[i],
                    "start_date": start,
                    "end_date": None,
                    "billing_alignment": "calendar",
                    "amendments": [],
                }
            )
        roles = (
            ["start_mid"] * 4
            + ["end_mid"] * 3
            + ["plan_change"] * 4
            + ["price_override"] * 4
            + ["quantity_change"] * 3
            + ["cancellation"] * 2
            + ["prepaid"] * 4
            + ["commit"] * 4
            + ["anniversary"] * 10
            + ["addon"]
        )
        perm = rng.permutation(n)
        taken: set[int] = set()

        def pick(pred) -> int | None:
            for j in perm:
                j = int(j)
                if j not in taken and pred(j):
                    taken.add(j)
                    return j
            return None

        extra: list[dict[str, Any]] = []
        n_prepaid = 0
        n_override = 0
        for role in roles:
            if role == "quantity_change":
                j = pick(lambda j: plan_of[j].startswith("growth-"))
            elif role == "plan_change":
                j = pick(lambda j: plan_of[j] in UPGRADES)
            elif role == "addon":
                j = pick(lambda j: self.customers[j]["currency"] == "USD")
            elif role == "price_override":
                j = pick(lambda j: plan_of[j] != "addon-usd")
            else:
                j = pick(lambda j: True)
            if j is None:
                continue
            k = contracts[j]
            cur = self.plan_by_id[k["plan_id"]]["currency"]
            if role == "start_mid":
                k["start_date"] = self._rand_mid_month(5, 25)
            elif role == "end_mid":
                k["end_date"] = self._rand_mid_month(8, 22)
            elif role == "anniversary":
                s = _d(k["start_date"])
                k["start_date"] = _n(s.replace(day=int(rng.integers(2, 29))))
                k["billing_alignment"] = "anniversary"
            elif role == "plan_change":
                k["amendments"].append(
                    {
                        "effective_date": self._rand_mid_month(),
                        "type": "plan_change",
                        "plan_id": UPGRADES[k["plan_id"]],
                    }
                )
            elif role == "price_override":
                plan = self.plan_by_id[k["plan_id"]]
                am: dict[str, Any] = {
                    "effective_date": self._rand_mid_month(),
                    "type": "price_override",
                }
                kind = n_override % 3
                n_override += 1
                per_unit = [u for u in plan["usage"] if u["model"] == "per_unit"]
                tiered = [u for u in plan["usage"] if u["model"] in ("graduated", "volume")]
                if kind == 0 and per_unit:
                    ch = per_unit[0]
                    am["charge_id"] = ch["charge_id"]
                    am["unit_amount"] = _scale(ch["unit_amount"], "0.8")
                elif kind == 1 and tiered:
                    ch = tiered[0]
                    am["charge_id"] = ch["charge_id"]
                    am["tiers"] = [
                        {**t, "unit_amount": _scale(t["unit_amount"], "0.75")}
                        for t in deepcopy(ch["tiers"])
                    ]
                else:
                    ch = plan["recurring"][0]
                    am["charge_id"] = ch["charge_id"]
                    am["amount"] = _scale(ch["amount"], "0.9", CURRENCY_DECIMALS[cur])
                k["amendments"].append(am)
            elif role == "quantity_change":
                k["amendments"].append(
                    {
                        "effective_date": self._rand_mid_month(),
                        "type": "quantity_change",
                        "charge_id": "seats-fee",
                        "quantity": str(int(rng.integers(12, 40))),
                    }
                )
            elif role == "cancellation":
                k["amendments"].append(
                    {"effective_date": self._rand_mid_month(), "type": "cancellation"}
                )
            elif role == "prepaid":
                exp = self._rand_mid_month(12, 18) if n_prepaid == 0 else self.last_day + 180
                if exp <= self.first_day:
                    exp = self.last_day + 180
                n_prepaid += 1
                k["prepaid_credit"] = {"amount": _money("5000", cur), "expires_on": exp}
            elif role == "commit":
                k["minimum_commitment"] = {
                    "amount": _money("2500", cur),
                    "interval": "month",
                    "product_id": "platform",
                }
            elif role == "addon":
                end = self.last_day + int(rng.integers(100, 300))
                k["end_date"] = end
                extra.append(
                    {
                        "contract_id": "",
                        "customer_id": k["customer_id"],
                        "plan_id": "addon-usd",
                        "start_date": self._rand_mid_month(5, 25),
                        "end_date": end,
                        "billing_alignment": k["billing_alignment"],
                        "co_term_with": k["contract_id"],
                        "amendments": [],
                    }
                )
        for e in extra:
            e["contract_id"] = f"C-{len(contracts) + 1:04d}"
            contracts.append(e)
        self.contracts = contracts

    def _credits(self) -> None:
        rng = self.rng
        self.credits: list[dict[str, str]] = []
        cands = [k for k in self.contracts if k["end_date"] is None and not k["amendments"]]
        months = [_d(f).strftime("%Y-%m") for f, _ in self.month_days]
        for i in range(4):
            k = cands[int(rng.integers(len(cands)))]
            cur = self.plan_by_id[k["plan_id"]]["currency"]
            self.credits.append(
                {
                    "credit_id": f"CR-{i + 1:04d}",
                    "contract_id": k["contract_id"],
                    "period": months[int(rng.integers(len(months)))],
                    "amount": _money(str(int(rng.choice([50, 100, 150, 250]))), cur),
                    "currency": cur,
                    "product_id": "api",
                    "reason": "SLA breach: monthly API availability below 99.9%",
                }
            )

    # -- arrays used by the event generator
    def _event_arrays(self) -> None:
        rng = self.rng
        n = N_CUSTOMERS
        idx = {c["customer_id"]: i for i, c in enumerate(self.customers)}
        cs, starts, stops = [], [], []
        uses = np.zeros((len(TYPES), n), dtype=bool)
        meter_type = {m["slug"]: TYPES.index(m["event_type"]) for m in METERS}
        for k in self.contracts:
            ci = idx[k["customer_id"]]
            stop = k["end_date"] if k["end_date"] is not None else 10**7
            for a in k["amendments"]:
                if a["type"] == "cancellation":
                    stop = min(stop, a["effective_date"])
            cs.append(ci)
            starts.append(k["start_date"])
            stops.append(stop)
            pids = [k["plan_id"]] + [
                a["plan_id"] for a in k["amendments"] if a["type"] == "plan_change"
            ]
            for pid in pids:
                for u in self.plan_by_id[pid]["usage"]:
                    uses[meter_type[u["meter"]], ci] = True
        self.k_cust = np.array(cs)
        self.k_start = np.array(starts)
        self.k_stop = np.array(stops)
        self.uses = uses
        self.cust_ids = pl.Series("customer_id", [c["customer_id"] for c in self.customers])
        self.cur_str = pl.Series("currency", [c["currency"] for c in self.customers])
        self.is_jpy = np.array([c["currency"] == "JPY" for c in self.customers])
        ent = [c["entity_id"] for c in self.customers]
        home = np.array([ENTITY_REGION[e] for e in ent])
        home[(np.array(ent) == "US01") & (rng.random(n) < 0.3)] = 3
        self.home_region = home
        wmax = self.size_w.max()
        self.n_users = np.clip((3 + 3000 * self.size_w / wmax).astype(np.int64), 3, 99_999)
        self.base_gb_milli = (
            rng.lognormal(4.0, 1.2, n) * (0.2 + self.size_w / wmax) * 1000
        ).astype(np.int64) + 500
        self.gb_growth = rng.uniform(0.0005, 0.01, n)
        self.base_seats = (5 + 400 * self.size_w / wmax * rng.uniform(0.5, 1.5, n)).astype(np.int64)
        span = self.last_day + TAIL_DAYS - self.first_day + 1
        self.seat_change_day = self.first_day + rng.integers(0, 2 * span, n)
        self.seat_delta = rng.integers(-3, 8, n)
        self.pay_mu = rng.uniform(3.0, 5.5, n)  # log of typical payment in major units
        self.base_w = np.stack([self.size_w**a for a in TYPE_ALPHA])
        self._wcache: dict[bytes, np.ndarray] = {}

    def weights(self, day: int) -> np.ndarray:
        """Per type, the probability of each customer sending an event of that type on `day`."""
        live = (self.k_start <= day) & (day < self.k_stop)
        active = np.bincount(self.k_cust[live], minlength=N_CUSTOMERS) > 0
        key = active.tobytes()
        w = self._wcache.get(key)
        if w is None:
            w = self.base_w * active * self.uses
            for t in range(len(TYPES)):
                if w[t].sum() <= 0:
                    w[t] = self.base_w[t] * (active if active.any() else 1)
            w = w / w.sum(axis=1, keepdims=True)
            self._wcache[key] = w
        return w

    # -- writers
    def write(self, ref: Path, fx_days: tuple[int, int]) -> dict[str, int]:
        ref.mkdir(parents=True, exist_ok=True)
        _write_yaml(ref / "meters.yaml", {"meters": METERS})
        _write_csv(
            ref / "entities.csv",
            ENTITY_COLUMNS,
            [dict(zip(ENTITY_COLUMNS, e, strict=True)) for e in ENTITIES],
        )
        _write_csv(
            ref / "customers.csv",
            ["customer_id", "name", "entity_id", "currency", "country"],
            self.customers,
        )
        _write_csv(
            ref / "products.csv",
            PRODUCT_COLUMNS,
            [dict(zip(PRODUCT_COLUMNS, p, strict=True)) for p in PRODUCTS],
        )
        _write_yaml(ref / "plans.yaml", {"plans": self.plans})
        out = []
        for k in self.contracts:
            o: dict[str, Any] = {
                "contract_id": k["contract_id"],
                "customer_id": k["customer_id"],
                "plan_id": k["plan_id"],
                "start_date": _d(k["start_date"]),
                "end_date": None if k["end_date"] is None else _d(k["end_date"]),
                "billing_alignment": k["billing_alignment"],
            }
            if "co_term_with" in k:
                o["co_term_with"] = k["co_term_with"]
            if "prepaid_credit" in k:
                p = k["prepaid_credit"]
                o["prepaid_credit"] = {"amount": p["amount"], "expires_on": _d(p["expires_on"])}
            if "minimum_commitment" in k:
                o["minimum_commitment"] = dict(k["minimum_commitment"])
            o["amendments"] = [
                {
                    "effective_date": _d(a["effective_date"]),
                    **{x: y for x, y in a.items() if x != "effective_date"},
                }
                for a in sorted(k["amendments"], key=lambda a: a["effective_date"])
            ]
            out.append(o)
        _write_yaml(ref / "contracts.yaml", {"contracts": out})
        _write_csv(
            ref / "credits.csv",
            ["credit_id", "contract_id", "period", "amount", "currency", "product_id", "reason"],
            self.credits,
        )
        _write_yaml(
            ref / "accounts.yaml", {"accounts": {e[0]: deepcopy(ACCOUNTS) for e in ENTITIES}}
        )
        n_fx = self._write_fx(ref / "fx_rates.csv", *fx_days)
        return {
            "customers": len(self.customers),
            "contracts": len(self.contracts),
            "plans": len(self.plans),
            "credits": len(self.credits),
            "fx_rates": n_fx,
        }

    def _write_fx(self, path: Path, lo: int, hi: int) -> int:
        functional = {e[0]: e[2] for e in ENTITIES}
        pairs = sorted(
            {(c["currency"], functional[c["entity_id"]]) for c in self.customers}
            - {(x, x) for x in FX_BASE}
        )
        curs = sorted(FX_BASE)
        days = hi - lo + 1
        steps = self.rng.normal(0.0, 0.003, size=(days, len(curs)))
        steps[0] = 0.0
        per_usd = {c: FX_BASE[c] * np.exp(np.cumsum(steps[:, j])) for j, c in enumerate(curs)}
        per_usd["USD"] = np.ones(days)
        rows = []
        for i in range(days):
            ds = _d(lo + i).isoformat()
            for f, t in pairs:
                rows.append(
                    {
                        "date": ds,
                        "from_currency": f,
                        "to_currency": t,
                        "rate": f"{per_usd[t][i] / per_usd[f][i]:.8f}",
                        "rate_type": "daily",
                    }
                )
        _write_csv(path, ["date", "from_currency", "to_currency", "rate", "rate_type"], rows)
        return len(rows)


def _scale(amount: str, factor: str, places: int | None = None) -> str:
    d = Decimal(amount)
    if places is None:
        places = max(-d.as_tuple().exponent, 0)
    return str((d * Decimal(factor)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN))


def _write_yaml(path: Path, obj: Any) -> None:
    text = yaml.safe_dump(
        obj, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120
    )
    path.write_text(text, encoding="utf-8", newline="\n")


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8", newline="\n")


# --------------------------------------------------------------------------- vectorised lines

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_POS = np.array([*range(0, 8), *range(9, 13), *range(14, 18), *range(19, 23), *range(24, 36)])


def _fixed_width(mat: np.ndarray) -> pl.Series:
    """Rows of an (n, w) uint8 ASCII matrix as a String Series, without a Python loop."""
    n, w = mat.shape
    data = np.ascontiguousarray(mat)
    offsets = np.arange(n + 1, dtype=np.int64) * w
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
    return pl.Series(arr)


def _uuids(rng: np.random.Generator, n: int) -> pl.Series:
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16)
    nib = np.empty((n, 32), dtype=np.uint8)
    nib[:, 0::2] = raw >> 4
    nib[:, 1::2] = raw & 15
    nib[:, 12] = 4
    nib[:, 16] = 8 | (nib[:, 16] & 3)
    mat = np.full((n, 36), ord("-"), dtype=np.uint8)
    mat[:, _UUID_POS] = _HEX[nib]
    return _fixed_width(mat)


def _times(day: int, ms: np.ndarray) -> pl.Series:
    """RFC 3339 UTC timestamps with milliseconds for times `ms` into `day`."""
    n = len(ms)
    mat = np.empty((n, 24), dtype=np.uint8)
    mat[:, :11] = np.frombuffer(_d(day).isoformat().encode() + b"T", dtype=np.uint8)
    h, rem = np.divmod(ms, 3_600_000)
    mi, rem = np.divmod(rem, 60_000)
    s, f = np.divmod(rem, 1000)
    for col, v in ((11, h), (14, mi), (17, s)):
        mat[:, col] = 48 + v // 10
        mat[:, col + 1] = 48 + v % 10
    mat[:, 13] = mat[:, 16] = ord(":")
    mat[:, 19] = ord(".")
    mat[:, 20] = 48 + f // 100
    mat[:, 21] = 48 + (f // 10) % 10
    mat[:, 22] = 48 + f % 10
    mat[:, 23] = ord("Z")
    return _fixed_width(mat)


def _fmt_ms(ms: int) -> str:
    d, rem = divmod(int(ms), MS_PER_DAY)
    h, rem = divmod(rem, 3_600_000)
    mi, rem = divmod(rem, 60_000)
    s, f = divmod(rem, 1000)
    return f"{_d(d).isoformat()}T{h:02d}:{mi:02d}:{s:02d}.{f:03d}Z"


def _cat(*parts: Any) -> pl.Expr:
    """concat_str of literal strings and expressions (no format-string escaping to get wrong)."""
    return pl.concat_str([pl.lit(p) if isinstance(p, str) else p for p in parts])


def _zfill(col: str, width: int) -> pl.Expr:
    return pl.col(col).cast(pl.String).str.zfill(width)


LINE_SCHEMA = {
    "line": pl.String,
    "key": pl.Float64,
    "outcome": pl.String,
    "reason": pl.String,
    "fault": pl.String,
    "source": pl.String,
    "event_id": pl.String,
    "event_type": pl.String,
    "customer_id": pl.String,
    "meter_count": pl.Int64,
    "gen_month": pl.String,
}


class _Events:
    def __init__(self, ref: _Reference, rng: np.random.Generator):
        self.ref = ref
        self.rng = rng
        self.sources = pl.Series(SOURCES)
        self.regions = pl.Series(REGIONS)
        self.types = pl.Series(TYPES)
        self.endpoints = pl.Series(ENDPOINTS)
        self.models = pl.Series(MODELS)
        self.statuses = pl.Series(STATUSES)

    def _data(self, t: int, day: int, cust: np.ndarray, region: np.ndarray) -> pl.Series:
        rng, ref = self.rng, self.ref
        k = len(cust)
        if t == T_API:
            df = pl.DataFrame(
                {
                    "r": self.regions.gather(region),
                    "e": self.endpoints.gather(rng.choice(len(ENDPOINTS), k, p=ENDPOINT_P)),
                    "s": self.statuses.gather(rng.choice(len(STATUSES), k, p=STATUS_P)),
                }
            )
            expr = _cat(
                '{"region":"',
                pl.col("r"),
                '","endpoint":"',
                pl.col("e"),
                '","status":',
                pl.col("s"),
                "}",
            )
        elif t == T_LLM:
            tokens = np.maximum(1, rng.lognormal(6.0, 1.1, k)).astype(np.int64)
            df = pl.DataFrame(
                {"m": self.models.gather(rng.choice(len(MODELS), k, p=MODEL_P)), "t": tokens}
            )
            expr = _cat('{"model":"', pl.col("m"), '","tokens":', pl.col("t").cast(pl.String), "}")
        elif t == T_USER:
            u = (ref.n_users[cust] * rng.random(k) ** 2).astype(np.int64) + 1
            df = pl.DataFrame({"u": u})
            expr = _cat('{"user_id":"u-', _zfill("u", 5), '"}')
        elif t == T_STORAGE:
            age = day - ref.first_day
            milli = ref.base_gb_milli[cust] * (1 + ref.gb_growth[cust] * max(age, 0))
            milli = (milli * (1 + 0.002 * rng.standard_normal(k))).astype(np.int64).clip(1, None)
            df = pl.DataFrame({"i": milli // 1000, "f": milli % 1000})
            expr = _cat('{"gb":', pl.col("i").cast(pl.String), ".", _zfill("f", 3), "}")
        elif t == T_SEATS:
            seats = ref.base_seats[cust] + ref.seat_delta[cust] * (day >= ref.seat_change_day[cust])
            df = pl.DataFrame({"s": np.maximum(seats, 1)})
            expr = _cat('{"seats":', pl.col("s").cast(pl.String), "}")
        else:
            jpy = ref.is_jpy[cust]
            major = np.exp(ref.pay_mu[cust] + 0.9 * rng.standard_normal(k))
            minor = np.where(jpy, major * 150, major * 100).astype(np.int64).clip(50, None)
            df = pl.DataFrame({"j": jpy, "m": minor, "c": ref.cur_str.gather(cust)})
            amount = (
                pl.when(pl.col("j"))
                .then(pl.col("m").cast(pl.String))
                .otherwise(
                    _cat(
                        (pl.col("m") // 100).cast(pl.String), ".", _zfill_expr(pl.col("m") % 100, 2)
                    )
                )
            )
            expr = _cat('{"amount":"', amount, '","currency":"', pl.col("c"), '"}')
        return df.select(expr.alias("data")).to_series()

    def batch(self, day: int, counts: np.ndarray) -> pl.DataFrame:
        """`counts[t]` fresh valid events of each type on `day`, in type order.

        Columns: line (without newline), ms (time of day), source, event_id, event_type,
        customer_id, meter_count."""
        rng = self.rng
        w = self.ref.weights(day)
        parts = []
        for t, k in enumerate(counts):
            k = int(k)
            if k == 0:
                continue
            cust = rng.choice(N_CUSTOMERS, size=k, p=w[t])
            ms = rng.integers(0, MS_PER_DAY, size=k)
            region = self.ref.home_region[cust].copy()
            flip = rng.random(k) < 0.08
            region[flip] = rng.integers(0, len(REGIONS), int(flip.sum()))
            parts.append(
                pl.DataFrame(
                    {
                        "t": np.full(k, t, dtype=np.int64),
                        "cust": cust,
                        "src": region,
                        "ms": ms,
                        "data": self._data(t, day, cust, region),
                    }
                )
            )
        df = (
            pl.concat(parts)
            if parts
            else pl.DataFrame(
                {"t": [], "cust": [], "src": [], "ms": [], "data": []},
                schema={
                    "t": pl.Int64,
                    "cust": pl.Int64,
                    "src": pl.Int64,
                    "ms": pl.Int64,
                    "data": pl.String,
                },
            )
        )
        n = df.height
        t = df["t"].to_numpy()
        df = pl.DataFrame(
            {
                "event_id": _uuids(rng, n),
                "source": self.sources.gather(df["src"].to_numpy()),
                "event_type": self.types.gather(t),
                "customer_id": self.ref.cust_ids.gather(df["cust"].to_numpy()),
                "time": _times(day, df["ms"].to_numpy()),
                "data": df["data"],
                "ms": df["ms"],
                "meter_count": METER_COUNT[t],
            }
        )
        line = _cat(
            '{"specversion":"1.0","id":"',
            pl.col("event_id"),
            '","source":"',
            pl.col("source"),
            '","type":"',
            pl.col("event_type"),
            '","subject":"',
            pl.col("customer_id"),
            '","time":"',
            pl.col("time"),
            '","datacontenttype":"application/json","data":',
            pl.col("data"),
            "}",
        )
        return df.select(
            line.alias("line"),
            "ms",
            "source",
            "event_id",
            "event_type",
            "customer_id",
            "meter_count",
        )


def _zfill_expr(e: pl.Expr, width: int) -> pl.Expr:
    return e.cast(pl.String).str.zfill(width)


def _frame(df: pl.DataFrame) -> pl.DataFrame:
    return df.select([pl.col(c).cast(t) for c, t in LINE_SCHEMA.items()])


# --------------------------------------------------------------------------- fault lines

# Private-use characters stand in for invalid UTF-8 bytes until the file is written.
_BAD_BYTES = {"\ue000": b"\xff", "\ue001": b"\xe3", "\ue002": b"\xe2\x82"}
_ENVELOPE = ("specversion", "id", "source", "type", "subject", "time")
_MISTYPE_ENV = (
    "specversion_03",
    "specversion_num",
    "id_num",
    "subject_num",
    "time_no_offset",
    "time_epoch",
    "data_string",
    "data_list",
    "source_num",
)
_MISTYPE_VAL = ("value_text", "value_bool", "value_object", "value_missing", "value_null")
_VALUE_TYPES = (T_LLM, T_STORAGE, T_SEATS, T_PAY)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class _Faults:
    """Builds the injected fault lines for one landing day."""

    def __init__(self, events: _Events, lateness_days: int):
        self.ev = events
        self.rng = events.rng
        self.lateness = lateness_days

    def build(self, day: int, plan: list[tuple[str, str]]) -> pl.DataFrame:
        rng = self.rng
        specs = []
        for fault, month in plan:
            variant = None
            if fault == "negative_quantity":
                t = _VALUE_TYPES[rng.integers(len(_VALUE_TYPES))]
            elif fault == "mistyped_field":
                if rng.random() < 0.35:
                    variant = _MISTYPE_VAL[rng.integers(len(_MISTYPE_VAL))]
                    t = (*_VALUE_TYPES, T_USER)[rng.integers(len(_VALUE_TYPES) + 1)]
                    if t == T_USER and variant not in ("value_missing", "value_null"):
                        variant = "value_null"
                else:
                    variant = _MISTYPE_ENV[rng.integers(len(_MISTYPE_ENV))]
                    t = int(rng.choice(len(TYPES), p=TYPE_P))
            else:
                t = int(rng.choice(len(TYPES), p=TYPE_P))
            specs.append((t, fault, month, variant))
        specs.sort(key=lambda s: s[0])  # stable: same order as the type-ordered batch
        counts = np.bincount([s[0] for s in specs], minlength=len(TYPES))
        tmpl = self.ev.batch(day, counts)
        rows = []
        for (t, fault, month, variant), rec in zip(specs, tmpl.iter_rows(named=True), strict=True):
            line, reason, fields = self._corrupt(day, fault, variant, t, rec)
            rows.append(
                {
                    "line": line,
                    "key": float(rng.random()),
                    "outcome": "quarantined",
                    "reason": reason,
                    "fault": fault,
                    "meter_count": 0,
                    "gen_month": month,
                    **fields,
                }
            )
        return _frame(pl.DataFrame(rows, schema=LINE_SCHEMA))

    def _corrupt(
        self, day: int, fault: str, variant: str | None, t: int, rec: dict
    ) -> tuple[str, str, dict]:
        rng = self.rng
        obj = json.loads(rec["line"])
        unparsed = {"source": None, "event_id": None, "event_type": None, "customer_id": None}

        def fields(o: dict) -> dict:
            def s(k):
                v = o.get(k)
                return v if isinstance(v, str) else None

            return {
                "source": s("source"),
                "event_id": s("id"),
                "event_type": s("type"),
                "customer_id": s("subject"),
            }

        if fault == "invalid_encoding":
            v = int(rng.integers(3))
            if v == 0:
                obj["subject"] = obj["subject"][:7] + "\ue000" + obj["subject"][7:]
            elif v == 1:
                obj["data"]["site"] = "S\ue001o Paulo"
            else:
                obj["source"] = obj["source"] + "\ue002"
            return _dumps(obj), "invalid_encoding", unparsed
        if fault == "empty_line":
            return ("", " ", "  ", "\t", " \t ")[rng.integers(5)], "empty_line", unparsed
        if fault == "invalid_json":
            text = rec["line"]
            v = int(rng.integers(3))
            if v == 0:
                text = text[: int(rng.integers(1, len(text) - 1))]
            elif v == 1:
                text = "INFO ingest " + text
            else:
                text = text.replace('"specversion"', "specversion", 1)
            return text, "invalid_json", unparsed
        if fault == "not_an_object":
            v = int(rng.integers(4))
            text = ("[" + rec["line"] + "]", _dumps(rec["line"]), "null", "42")[v]
            return text, "not_an_object", unparsed
        if fault == "missing_field":
            f = _ENVELOPE[rng.integers(len(_ENVELOPE))]
            v = int(rng.integers(3))
            if v == 0:
                del obj[f]
            else:
                obj[f] = None if v == 1 else ""
            return _dumps(obj), "missing_field", fields(obj)
        if fault == "mistyped_field":
            reason = "invalid_field"
            if variant == "specversion_03":
                obj["specversion"] = "0.3"
            elif variant == "specversion_num":
                obj["specversion"] = 1.0
            elif variant == "id_num":
                obj["id"] = int(rng.integers(1, 10**9))
            elif variant == "subject_num":
                obj["subject"] = int(obj["subject"][5:])
            elif variant == "source_num":
                obj["source"] = 443
            elif variant == "time_no_offset":
                obj["time"] = obj["time"][:-1]
            elif variant == "time_epoch":
                obj["time"] = int(day) * 86_400 + int(rec["ms"]) // 1000
            elif variant == "data_string":
                obj["data"] = _dumps(obj["data"])
            elif variant == "data_list":
                obj["data"] = [obj["data"]]
            else:
                reason = "invalid_value"
                f = VALUE_FIELD[t]
                if variant == "value_text":
                    obj["data"][f] = "n/a"
                elif variant == "value_bool":
                    obj["data"][f] = True
                elif variant == "value_object":
                    obj["data"][f] = {"value": obj["data"][f]}
                elif variant == "value_missing":
                    del obj["data"][f]
                else:
                    obj["data"][f] = None
            return _dumps(obj), reason, fields(obj)
        if fault == "negative_quantity":
            f = VALUE_FIELD[t]
            v = obj["data"][f]
            if t == T_PAY:
                obj["data"][f] = "-" + v
            elif t == T_STORAGE:
                obj["data"][f] = -round(abs(v) + 0.5, 3)
            else:
                obj["data"][f] = -abs(int(v)) - 1
            return _dumps(obj), "negative_value", fields(obj)
        if fault == "unknown_event_type":
            obj["type"] = ("api.request.v2", "llm.embedding", "billing.test", "user.signup")[
                rng.integers(4)
            ]
            return _dumps(obj), "unknown_event_type", fields(obj)
        if fault == "unknown_customer":
            obj["subject"] = UNKNOWN_CUSTOMERS[0] if rng.random() < 0.7 else UNKNOWN_CUSTOMERS[1]
            return _dumps(obj), "unknown_customer", fields(obj)
        if fault == "future_time":
            obj["time"] = _fmt_ms((day + 2) * MS_PER_DAY + int(rng.integers(0, 3 * MS_PER_DAY)))
            return _dumps(obj), "future_time", fields(obj)
        if fault == "too_late":
            back = self.lateness + 1 + int(rng.integers(0, 10))
            obj["time"] = _fmt_ms((day - back) * MS_PER_DAY + int(rng.integers(0, MS_PER_DAY)))
            return _dumps(obj), "too_late", fields(obj)
        raise ValueError(fault)


# --------------------------------------------------------------------------- writing

_GZ_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0, OS unknown


def _gzip(data: bytes) -> bytes:
    c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15, 9)
    body = c.compress(data) + c.flush()
    return (
        _GZ_HEADER
        + body
        + struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    )


def _write_file(path: Path, data: bytes, gz: bool) -> int:
    if gz:
        data = _gzip(data)
    path.write_bytes(data)
    return len(data)


def _text_bytes(lines: pl.Series, patch: bool) -> bytes:
    """Lines joined with a newline after each, as UTF-8 bytes (invalid bytes patched in)."""
    arr = (lines + "\n").to_arrow().cast(pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
        arr.offset : arr.offset + len(arr) + 1
    ]
    data = arr.buffers()[2].to_pybytes()[int(offsets[0]) : int(offsets[-1])] if len(arr) else b""
    if patch:
        for ch, bad in _BAD_BYTES.items():
            data = data.replace(ch.encode("utf-8"), bad)
    return data


MANIFEST_SCHEMA = pa.schema(
    [
        ("received_date", pa.date32()),
        ("file", pa.string()),
        ("line_no", pa.int64()),
        ("outcome", pa.string()),
        ("reason", pa.string()),
        ("fault", pa.string()),
        ("source", pa.string()),
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("customer_id", pa.string()),
        ("meter_count", pa.int64()),
    ]
)


# --------------------------------------------------------------------------- main entry


def generate(
    out_dir: Path, months: list[str], events_per_month: int, seed: int, lateness_days: int = 35
) -> dict:
    """Write reference data, landing files and the manifest under `out_dir`; return the summary.

    Deterministic: the same arguments give byte-identical files."""
    out_dir = Path(out_dir)
    months = sorted(set(months))
    if not months:
        raise ValueError("at least one month is required")
    if events_per_month < 0 or lateness_days < 0:
        raise ValueError("events_per_month and lateness_days must be 0 or more")
    month_days = [_month_bounds(m) for m in months]
    rng = np.random.default_rng(seed)
    first_day, last_event_day = month_days[0][0], month_days[-1][1]
    last_landing = last_event_day + TAIL_DAYS

    ref = _Reference(rng, month_days)
    ref_counts = ref.write(out_dir / "reference", (first_day - 10, last_landing + 10))
    events = _Events(ref, rng)
    faults = _Faults(events, lateness_days)

    # ---- per-month plans
    n_day: dict[int, int] = {}
    day_month: dict[int, str] = {}
    late_plan: dict[int, list[int]] = defaultdict(list)
    dup_same: dict[int, int] = defaultdict(int)
    dup_later: dict[int, int] = defaultdict(int)
    tl_plan: dict[int, int] = defaultdict(int)
    fault_plan: dict[int, list[tuple[str, str]]] = defaultdict(list)
    n = int(events_per_month)
    for month, (lo, hi) in zip(months, month_days, strict=True):
        days = np.arange(lo, hi + 1)
        wd = np.array([0.75 if _d(d).weekday() >= 5 else 1.0 for d in days])
        counts = rng.multinomial(n, wd / wd.sum())
        for d, c in zip(days, counts, strict=True):
            n_day[int(d)] = int(c)
            day_month[int(d)] = month
        share = counts / max(n, 1)
        max_k = min(TAIL_DAYS, lateness_days)
        n_late = min(n, max(round(LATE_RATE * n), max_k)) if max_k > 0 else 0
        for i in range(n_late):
            k = 1 + i % max_k
            land = hi + k
            e = int(rng.integers(max(lo, land - lateness_days), hi + 1))
            late_plan[e].append(land)
        n_dup = max(2, round(DUP_RATE * n)) if n >= 2 else 0
        if n_dup:
            for d, c in zip(days, rng.multinomial(n_dup // 2, share), strict=True):
                dup_same[int(d)] += int(c)
            for d, c in zip(days, rng.multinomial(n_dup - n_dup // 2, share), strict=True):
                dup_later[int(d)] += int(c)
        n_fault = max(1, round(FAULT_RATE * n))
        eligible = days[(days + lateness_days + 1 <= last_landing) & (counts > 0)]
        if len(eligible):
            w = np.array([n_day[int(d)] for d in eligible], dtype=float)
            for d in rng.choice(eligible, size=n_fault, p=w / w.sum()):
                tl_plan[int(d)] += 1
        else:
            for d in rng.choice(days, size=n_fault):
                fault_plan[int(d)].append(("too_late", month))
        for f in LINE_FAULTS:
            for d in rng.choice(days, size=n_fault):
                fault_plan[int(d)].append((f, month))

    # ---- day loop
    landing_root = out_dir / "landing" / "usage"
    manifest_dir = out_dir / "manifest"
    manifest_dir.mkdir(parents=True, exist_ok=True)
    if landing_root.exists():
        for p in sorted(landing_root.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    landing_root.mkdir(parents=True, exist_ok=True)
    pending: dict[int, list[pl.DataFrame]] = defaultdict(list)
    counters: Counter = Counter()
    files_info: dict[str, dict[str, Any]] = {}
    any_gz = False
    writer = pq.ParquetWriter(manifest_dir / "lines.parquet", MANIFEST_SCHEMA, compression="zstd")
    buffered: list[pa.Table] = []
    buffered_rows = 0
    pool_exec = ThreadPoolExecutor(max_workers=2)
    in_flight: list[list[Future]] = []
    max_lag = min(3, lateness_days)

    def flush() -> None:
        nonlocal buffered, buffered_rows
        if buffered:
            writer.write_table(pa.concat_tables(buffered), row_group_size=ROW_GROUP_ROWS)
        buffered, buffered_rows = [], 0

    try:
        for day in range(first_day, last_landing + 1):
            # 1. base events whose event_time falls on `day`
            if day in n_day and n_day[day] > 0:
                _base_day(
                    rng,
                    events,
                    day,
                    n_day[day],
                    day_month[day],
                    late_plan.get(day, []),
                    dup_same[day],
                    dup_later[day],
                    tl_plan[day],
                    lateness_days,
                    last_landing,
                    max_lag,
                    pending,
                    fault_plan,
                )
            # 2. fault lines landing on `day`
            parts = pending.pop(day, [])
            if fault_plan.get(day):
                parts.append(faults.build(day, fault_plan.pop(day)))
            if not parts:
                continue
            pool = pl.concat(parts, how="vertical").sort("key", maintain_order=True)
            nl = pool.height
            nf = int(min(rng.integers(2, 5), nl))
            sizes = 1 + rng.multinomial(nl - nf, rng.dirichlet(np.full(nf, 3.0)))
            gz = [False] + [bool(x) for x in rng.random(nf - 1) < 0.5]
            if not any_gz and nf > 1:
                gz[1] = True
            any_gz = any_gz or any(gz)
            ds = _d(day).isoformat()
            (landing_root / ds).mkdir(parents=True, exist_ok=True)
            names = [f"{ds}/events-{i:02d}.ndjson" + (".gz" if gz[i] else "") for i in range(nf)]
            bounds = np.concatenate([[0], np.cumsum(sizes)])
            futures = []
            for i in range(nf):
                chunk = pool.slice(int(bounds[i]), int(sizes[i]))
                patch = bool((chunk["fault"] == "invalid_encoding").any())
                data = _text_bytes(chunk["line"], patch)
                futures.append(pool_exec.submit(_write_file, landing_root / names[i], data, gz[i]))
                files_info[names[i]] = {"lines": int(sizes[i]), "gzip": gz[i]}
            in_flight.append(futures)
            while len(in_flight) > 2:
                for f in in_flight.pop(0):
                    f.result()
            line_no = np.arange(nl, dtype=np.int64) - np.repeat(bounds[:-1], sizes) + 1
            man = pool.select(
                pl.lit(_d(day), dtype=pl.Date).alias("received_date"),
                pl.Series("file", names, dtype=pl.String).gather(np.repeat(np.arange(nf), sizes)),
                pl.Series("line_no", line_no),
                "outcome",
                "reason",
                "fault",
                "source",
                "event_id",
                "event_type",
                "customer_id",
                "meter_count",
            )
            buffered.append(man.to_arrow().cast(MANIFEST_SCHEMA))
            buffered_rows += nl
            if buffered_rows >= ROW_GROUP_ROWS:
                flush()
            lm = ds[:7]
            for gm, fault, outcome, reason, cnt in (
                pool.group_by(["gen_month", "fault", "outcome", "reason"]).len().iter_rows()
            ):
                counters[(gm, lm, fault, outcome, reason)] += cnt
        flush()
        for futures in in_flight:
            for f in futures:
                f.result()
    finally:
        writer.close()
        pool_exec.shutdown(wait=True)
    if pending or fault_plan:
        raise RuntimeError("internal error: lines planned beyond the last landing day")

    summary = _summary(
        months,
        events_per_month,
        seed,
        lateness_days,
        counters,
        files_info,
        ref_counts,
        first_day,
        last_landing,
    )
    (manifest_dir / "summary.json").write_text(
        json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8", newline="\n"
    )
    return summary


def _base_day(
    rng: np.random.Generator,
    events: _Events,
    day: int,
    n: int,
    month: str,
    late_lands: list[int],
    n_same: int,
    n_later: int,
    n_tl: int,
    lateness: int,
    last_landing: int,
    max_lag: int,
    pending: dict[int, list[pl.DataFrame]],
    fault_plan: dict[int, list[tuple[str, str]]],
) -> None:
    """Generate a day's base events, their duplicates and too-late re-sends, by landing day."""
    df = events.batch(day, rng.multinomial(n, TYPE_P))
    ms = df["ms"].to_numpy()
    lag = np.zeros(n, dtype=np.int64)
    if max_lag > 0:
        lagged = rng.random(n) < NAT_LAG_P
        lag[lagged] = rng.choice(
            np.array([1, 2, 3]), size=int(lagged.sum()), p=[0.6, 0.3, 0.1]
        ).clip(None, max_lag)
    landing = day + lag
    u = rng.random(n)
    key = np.where(lag == 0, 0.9 * ms / MS_PER_DAY + 0.1 * u, u)
    fault = np.full(n, "none", dtype=object)

    order = rng.permutation(n)
    pos = 0
    nl = min(len(late_lands), n)
    late_idx = order[:nl]
    landing[late_idx] = np.array(late_lands[:nl], dtype=np.int64)
    key[late_idx] = rng.random(nl)
    fault[late_idx] = "late_event"
    pos = nl
    same_idx = order[pos : pos + n_same]
    pos += len(same_idx)
    later_idx = order[pos : pos + n_later]
    pos += len(later_idx)
    tl_idx = order[pos : pos + n_tl]
    if len(tl_idx) < n_tl:  # not enough events to re-send: make direct too-late lines instead
        fault_plan[day].extend([("too_late", month)] * (n_tl - len(tl_idx)))

    base = _frame(
        df.with_columns(
            pl.Series("key", key),
            pl.lit("accepted").alias("outcome"),
            pl.lit(None, dtype=pl.String).alias("reason"),
            pl.Series("fault", fault.tolist(), dtype=pl.String),
            pl.lit(month).alias("gen_month"),
        )
    ).with_columns(pl.Series("landing", landing))

    copies = []
    # later-day duplicates: 1..20 landing days later, within the lateness limit
    if len(later_idx):
        lmax = np.minimum(
            np.minimum(20, day + lateness - landing[later_idx]), last_landing - landing[later_idx]
        )
        ok = lmax >= 1
        same_idx = np.concatenate([same_idx, later_idx[~ok]])
        li = later_idx[ok]
        d = 1 + (rng.random(len(li)) * lmax[ok]).astype(np.int64)
        copies.append(
            base[li].with_columns(
                pl.Series("key", rng.random(len(li))),
                pl.lit("duplicate").alias("outcome"),
                pl.lit("duplicate_later_day").alias("fault"),
                pl.lit(0, dtype=pl.Int64).alias("meter_count"),
                pl.Series("landing", landing[li] + d),
            )
        )
    if len(same_idx):
        k0 = key[same_idx]
        copies.append(
            base[same_idx].with_columns(
                pl.Series("key", k0 + (1 - k0) * rng.uniform(0.01, 1.0, len(same_idx))),
                pl.lit("duplicate").alias("outcome"),
                pl.lit("duplicate_same_day").alias("fault"),
                pl.lit(0, dtype=pl.Int64).alias("meter_count"),
            )
        )
    if len(tl_idx):
        land = np.minimum(day + lateness + 1 + rng.integers(0, 4, len(tl_idx)), last_landing)
        copies.append(
            base[tl_idx].with_columns(
                pl.Series("key", rng.random(len(tl_idx))),
                pl.lit("quarantined").alias("outcome"),
                pl.lit("too_late").alias("reason"),
                pl.lit("too_late").alias("fault"),
                pl.lit(0, dtype=pl.Int64).alias("meter_count"),
                pl.Series("landing", land),
            )
        )
    allf = pl.concat([base, *copies], how="vertical")
    for (land_day,), part in allf.partition_by(
        "landing", as_dict=True, maintain_order=True
    ).items():
        part = part.drop("landing")
        if land_day != day:
            # Polars string columns may share the whole day's buffers: copy the few rows that
            # wait for a later landing day so they do not keep today's lines alive.
            part = pl.from_arrow(part.to_arrow())
        pending[int(land_day)].append(part)


def _summary(
    months: list[str],
    events_per_month: int,
    seed: int,
    lateness_days: int,
    counters: Counter,
    files_info: dict[str, dict[str, Any]],
    ref_counts: dict[str, int],
    first_day: int,
    last_landing: int,
) -> dict:
    def empty() -> dict:
        return {
            "lines": 0,
            "faults": {f: 0 for f in FAULTS},
            "outcomes": {o: 0 for o in OUTCOMES},
            "reasons": {},
        }

    by_month = {m: empty() for m in months}
    by_landing: dict[str, dict] = {}
    overall = empty()
    for (gm, lm, fault, outcome, reason), cnt in sorted(
        counters.items(), key=lambda kv: tuple(map(str, kv[0]))
    ):
        for bucket in (
            by_month.setdefault(gm, empty()),
            by_landing.setdefault(lm, empty()),
            overall,
        ):
            bucket["lines"] += cnt
            bucket["faults"][fault] += cnt
            bucket["outcomes"][outcome] += cnt
            if reason is not None:
                bucket["reasons"][reason] = bucket["reasons"].get(reason, 0) + cnt
    for m in months:
        by_month[m]["base_events"] = events_per_month
    return {
        "arguments": {
            "months": months,
            "events_per_month": events_per_month,
            "seed": seed,
            "lateness_days": lateness_days,
        },
        "landing": {
            "first_day": _d(first_day).isoformat(),
            "last_day": _d(last_landing).isoformat(),
            "days": len({p.split("/")[0] for p in files_info}),
            "files": len(files_info),
            "gzip_files": sum(1 for v in files_info.values() if v["gzip"]),
            "lines": overall["lines"],
        },
        "months": by_month,
        "landing_months": by_landing,
        "overall": overall,
        "fault_reasons": FAULT_REASONS,
        "unknown_customers": list(UNKNOWN_CUSTOMERS),
        "reference": ref_counts,
        "files": files_info,
    }
