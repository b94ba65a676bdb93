"""Reference data: meters, legal entities, customers, products, the account map and FX
rates, and the files all reference data is written to (``reference/``)."""

from __future__ import annotations

import csv
import io
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from sampledata.days import to_date

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
    "customer_credits": "2400",
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
ENTITY_SUFFIX = {
    "US01": ("Inc.", "LLC"),
    "EU01": ("GmbH", "B.V.", "SAS", "S.L."),
    "UK01": ("Ltd",),
    "JP01": ("K.K.",),
}


def draw_customers(
    rng: np.random.Generator,
) -> tuple[list[dict[str, str]], npt.NDArray[np.float64]]:
    """The customers, and each one's size (a heavy-tailed weight on how much it uses)."""
    n = N_CUSTOMERS
    ent_idx = rng.choice(len(ENTITIES), size=n, p=ENTITY_P)
    # a few guaranteed cross-currency customers and JPY customers
    ent_idx[:3] = [1, 3, 2]
    cross = rng.random(n) < 0.08
    cross[:3] = True
    ent_idx[3:6] = 3
    rows: list[dict[str, str]] = []
    used_names: set[str] = set()
    rank = rng.permutation(n) + 1
    size_w = (1.0 / rank**1.1) * rng.pareto(3.0, n).clip(0, 3) + 1e-4 / rank
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
        rows.append(
            {
                "customer_id": f"CUST-{i + 1:04d}",
                "name": name,
                "entity_id": eid,
                "currency": cur,
                "country": countries[rng.integers(len(countries))],
            }
        )
    return rows, size_w


def write_reference(
    ref: Path,
    rng: np.random.Generator,
    customer_rows: list[dict[str, str]],
    plans: list[dict[str, Any]],
    contracts: list[dict[str, Any]],
    credits: list[dict[str, str]],
    fx_days: tuple[int, int],
) -> dict[str, int]:
    """Write the reference files (``contracts`` as written to contracts.yaml); the FX rates
    are drawn here, last. Returns the counts for the summary."""
    ref.mkdir(parents=True, exist_ok=True)
    write_yaml(ref / "meters.yaml", {"meters": METERS})
    write_csv(
        ref / "entities.csv",
        ENTITY_COLUMNS,
        [dict(zip(ENTITY_COLUMNS, e, strict=True)) for e in ENTITIES],
    )
    write_csv(
        ref / "customers.csv",
        ["customer_id", "name", "entity_id", "currency", "country"],
        customer_rows,
    )
    write_csv(
        ref / "products.csv",
        PRODUCT_COLUMNS,
        [dict(zip(PRODUCT_COLUMNS, p, strict=True)) for p in PRODUCTS],
    )
    write_yaml(ref / "plans.yaml", {"plans": plans})
    write_yaml(ref / "contracts.yaml", {"contracts": contracts})
    write_csv(
        ref / "credits.csv",
        ["credit_id", "contract_id", "period", "amount", "currency", "product_id", "reason"],
        credits,
    )
    write_yaml(ref / "accounts.yaml", {"accounts": {e[0]: deepcopy(ACCOUNTS) for e in ENTITIES}})
    n_fx = _write_fx(ref / "fx_rates.csv", rng, customer_rows, *fx_days)
    return {
        "customers": len(customer_rows),
        "contracts": len(contracts),
        "plans": len(plans),
        "credits": len(credits),
        "fx_rates": n_fx,
    }


def _write_fx(
    path: Path, rng: np.random.Generator, customer_rows: list[dict[str, str]], lo: int, hi: int
) -> int:
    """Daily rates, a random walk from FX_BASE, for each pair a customer is billed in."""
    functional = {e[0]: e[2] for e in ENTITIES}
    pairs = sorted(
        {(c["currency"], functional[c["entity_id"]]) for c in customer_rows}
        - {(x, x) for x in FX_BASE}
    )
    curs = sorted(FX_BASE)
    days = hi - lo + 1
    steps = rng.normal(0.0, 0.003, size=(days, len(curs)))
    steps[0] = 0.0
    per_usd = {c: FX_BASE[c] * np.exp(np.cumsum(steps[:, j])) for j, c in enumerate(curs)}
    per_usd["USD"] = np.ones(days)
    rows = []
    for i in range(days):
        ds = to_date(lo + i).isoformat()
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
    write_csv(path, ["date", "from_currency", "to_currency", "rate", "rate_type"], rows)
    return len(rows)


def write_yaml(path: Path, obj: Any) -> None:
    text = yaml.safe_dump(
        obj, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120
    )
    path.write_text(text, encoding="utf-8", newline="\n")


def write_csv(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8", newline="\n")
