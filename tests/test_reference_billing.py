"""Plans and contracts load from reference files and refuse bad ones, naming file, key, value."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import yaml

from dagster_project.settings import REPO_ROOT
from rating.errors import ReferenceDataError
from resources.reference import ReferenceData

PRODUCTS = "product_id,name,product_family,business_unit\napi,API,usage,core\nai,AI,usage,ai\n"


def plan(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "plan_id": "growth-usd",
        "currency": "USD",
        "recurring": [
            {"charge_id": "platform", "product_id": "api", "amount": "1200.00", "interval": "month"}
        ],
        "usage": [
            {
                "charge_id": "api-calls",
                "meter": "api_calls",
                "product_id": "api",
                "model": "graduated",
                "tiers": [
                    {"up_to": "10", "unit_amount": "1", "flat_amount": "5"},
                    {"up_to": None, "unit_amount": "0.5"},
                ],
            }
        ],
    }
    base.update(changes)
    return base


def contract(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "contract_id": "C-1",
        "customer_id": "CUST-0001",
        "plan_id": "growth-usd",
        "start_date": "2026-09-14",
        "end_date": None,
        "billing_alignment": "calendar",
        "amendments": [],
    }
    base.update(changes)
    return base


def write(data_dir: Path, plans: list[object], contracts: list[object]) -> ReferenceData:
    reference = data_dir / "reference"
    (reference / "products.csv").write_text(PRODUCTS)
    (reference / "plans.yaml").write_text(yaml.safe_dump({"plans": plans}))
    (reference / "contracts.yaml").write_text(yaml.safe_dump({"contracts": contracts}))
    return ReferenceData(reference)


def test_shipped_reference_data_loads(tmp_path: Path) -> None:
    reference = ReferenceData(REPO_ROOT / "data" / "reference")
    plans = reference.plans()
    contracts = reference.contracts(plans)
    models = {u.model for p in plans.values() for u in p.usage}
    assert models == {
        "per_unit",
        "graduated",
        "volume",
        "package",
        "percentage",
        "graduated_percentage",
    }
    assert {a.type for c in contracts.values() for a in c.amendments} == {
        "plan_change",
        "price_override",
        "quantity_change",
        "cancellation",
    }


def test_valid_plan_and_contract(data_dir: Path) -> None:
    reference = write(
        data_dir,
        [plan()],
        [
            contract(
                amendments=[
                    {
                        "effective_date": "2026-10-15",
                        "type": "price_override",
                        "charge_id": "api-calls",
                        "tiers": [
                            {"up_to": "100", "unit_amount": "0.8"},
                            {"up_to": None, "unit_amount": "0.4"},
                        ],
                    },
                    {
                        "effective_date": "2026-10-20",
                        "type": "quantity_change",
                        "charge_id": "platform",
                        "quantity": "3",
                    },
                    {"effective_date": "2026-11-01", "type": "cancellation"},
                ]
            )
        ],
    )
    (c,) = reference.contracts().values()
    assert c.last_day == date(2026, 10, 31)
    assert c.amendments[0].tiers[0].up_to == Decimal("100")
    assert c.amendments[1].quantity == Decimal("3")


TIERS_DOWN = [
    {"up_to": "10", "unit_amount": "1"},
    {"up_to": "5", "unit_amount": "1"},
    {"up_to": None, "unit_amount": "1"},
]
TIERS_UP = [{"up_to": "10", "unit_amount": "1"}, {"up_to": None, "unit_amount": "0.5"}]
CLOSED_AFTER_OPEN = [{"up_to": None, "unit_amount": "1"}, {"up_to": "5", "unit_amount": "1"}]


def usage_with(**fields: object) -> list[dict[str, object]]:
    charge = dict(plan()["usage"][0])  # type: ignore[index]
    charge.update(fields)
    return [charge]


@pytest.mark.parametrize(
    ("plans", "contracts", "message"),
    [
        (
            [plan(usage=usage_with(meter="calls"))],
            [contract()],
            "plans.yaml: plan growth-usd.usage[api-calls].meter = 'calls': unknown meter",
        ),
        (
            [plan(usage=usage_with(tiers=TIERS_DOWN))],
            [contract()],
            "plans.yaml: plan growth-usd.usage[api-calls].tiers[2].up_to = '5': "
            "up_to must increase: expected more than 10",
        ),
        (
            [plan(usage=usage_with(tiers=CLOSED_AFTER_OPEN))],
            [contract()],
            "plans.yaml: plan growth-usd.usage[api-calls].tiers[2].up_to = '5': "
            "tier 1 is open (up_to: null), so no tier may follow it",
        ),
        (
            [plan(currency="XYZ")],
            [contract()],
            "plans.yaml: plan growth-usd.currency = 'XYZ': unknown currency code 'XYZ'",
        ),
        (
            [plan()],
            [contract(plan_id="pro-usd")],
            "contracts.yaml: contract C-1.plan_id = 'pro-usd': unknown plan",
        ),
        (
            [plan()],
            [contract(customer_id="CUST-9999")],
            "contracts.yaml: contract C-1.customer_id = 'CUST-9999': not a customer",
        ),
        (
            [plan()],
            [contract(), contract(contract_id="C-2", start_date="2026-10-01")],
            "contracts.yaml: contract C-2.start_date = '2026-10-01': overlaps contract C-1 of "
            "customer CUST-0001, which also meters ['api_calls']",
        ),
        (
            [plan()],
            [contract(customer_id="CUST-0002")],
            "contracts.yaml: contract C-1.plan_id = 'growth-usd': a plan in EUR, the customer's "
            "billing currency",
        ),
        (
            [plan(usage=usage_with(model="package", tiers=None))],
            [contract()],
            "plans.yaml: plan growth-usd.usage[api-calls].package_size = None: package needs it",
        ),
        (
            [plan()],
            [
                contract(
                    amendments=[
                        {
                            "effective_date": "2026-10-01",
                            "type": "quantity_change",
                            "charge_id": "api-calls",
                            "quantity": "2",
                        }
                    ]
                )
            ],
            "contracts.yaml: contract C-1.amendments[0].charge_id = 'api-calls': "
            "quantities change on recurring charges",
        ),
        (
            [plan(usage=usage_with(model="percentage", tiers=None, rate="1", included_units="10"))],
            [contract()],
            "plans.yaml: plan growth-usd.usage[api-calls].included_units = '10': a percentage "
            "charge's allowance is free_amount or free_events",
        ),
        (
            [plan(usage=usage_with(model="percentage", tiers=None, rate="1"))],
            [contract()],
            "plans.yaml: plan growth-usd.usage[api-calls].meter = 'api_calls': percentage prices "
            "an amount: a SUM meter, not COUNT",
        ),
        (
            [plan()],
            [
                contract(
                    amendments=[
                        {
                            "effective_date": "2026-10-01",
                            "type": "price_override",
                            "charge_id": "api-calls",
                            "tiers": TIERS_UP,
                        },
                        {
                            "effective_date": "2026-10-01",
                            "type": "price_override",
                            "charge_id": "api-calls",
                            "tiers": TIERS_UP,
                        },
                    ]
                )
            ],
            "contracts.yaml: contract C-1.amendments[1].tiers = '2026-10-01': "
            "api-calls.tiers is already overridden on that day",
        ),
        (
            [plan()],
            [contract(amendments=[{"effective_date": "2026-09-01", "type": "cancellation"}])],
            "contracts.yaml: contract C-1.amendments[0].effective_date = '2026-09-01': "
            "on or after start_date 2026-09-14",
        ),
    ],
)
def test_bad_reference_data_is_refused_with_its_location(
    data_dir: Path, plans: list[object], contracts: list[object], message: str
) -> None:
    reference = write(data_dir, plans, contracts)
    with pytest.raises(ReferenceDataError) as error:
        reference.contracts()
    assert message in str(error.value)


def test_a_price_agreed_from_day_one_is_an_amendment_on_the_start_date(data_dir: Path) -> None:
    reference = write(
        data_dir,
        [plan()],
        [
            contract(
                amendments=[
                    {
                        "effective_date": "2026-09-14",
                        "type": "price_override",
                        "charge_id": "api-calls",
                        "tiers": TIERS_UP,
                    }
                ]
            )
        ],
    )
    (c,) = reference.contracts().values()
    assert c.amendments[0].effective_date == date(2026, 9, 14)


def test_plans_and_contracts_from_a_sql_export_equal_the_files(tmp_path: Path) -> None:
    """The subscription platform's export: the same records, flattened into tables."""
    import json

    import sqlalchemy as sa

    shipped = REPO_ROOT / "data" / "reference"
    files = ReferenceData(shipped)
    plans_yaml = yaml.safe_load((shipped / "plans.yaml").read_text())["plans"]
    contracts_yaml = yaml.safe_load((shipped / "contracts.yaml").read_text())["contracts"]
    tables: dict[str, list[dict[str, object]]] = {
        "plans": [],
        "plan_charges": [],
        "plan_tiers": [],
        "contracts": [],
        "contract_amendments": [],
        "amendment_tiers": [],
    }
    for p in plans_yaml:
        tables["plans"].append(
            {"plan_id": p["plan_id"], "name": p["name"], "currency": p["currency"]}
        )
        for kind in ("recurring", "usage"):
            for c in p[kind]:
                row = {k: v for k, v in c.items() if k != "tiers"}
                if "group_by" in row:
                    row["group_by"] = json.dumps(row["group_by"])
                tables["plan_charges"].append({"plan_id": p["plan_id"], "kind": kind, **row})
                for n, t in enumerate(c.get("tiers") or [], start=1):
                    tables["plan_tiers"].append(
                        {"plan_id": p["plan_id"], "charge_id": c["charge_id"], "tier_no": n, **t}
                    )
    for c in contracts_yaml:
        row = {
            k: c[k]
            for k in (
                "contract_id",
                "customer_id",
                "plan_id",
                "start_date",
                "end_date",
                "billing_alignment",
            )
        }
        if "prepaid_credit" in c:
            row["prepaid_credit_amount"] = c["prepaid_credit"]["amount"]
            row["prepaid_credit_expires_on"] = c["prepaid_credit"]["expires_on"]
        if "minimum_commitment" in c:
            row["minimum_commitment_amount"] = c["minimum_commitment"]["amount"]
            row["minimum_commitment_interval"] = c["minimum_commitment"]["interval"]
            row["minimum_commitment_product_id"] = c["minimum_commitment"]["product_id"]
        row["co_term_with"] = c.get("co_term_with")
        tables["contracts"].append(row)
        for seq, a in enumerate(c["amendments"], start=1):
            amendment = {k: v for k, v in a.items() if k != "tiers"}
            tables["contract_amendments"].append(
                {"contract_id": c["contract_id"], "seq": seq, **amendment}
            )
            for n, t in enumerate(a.get("tiers") or [], start=1):
                tables["amendment_tiers"].append(
                    {"contract_id": c["contract_id"], "seq": seq, "tier_no": n, **t}
                )
    tables["meters"] = [
        {
            "slug": m.slug,
            "event_type": m.event_type,
            "aggregation": m.aggregation.value,
            "value_property": m.value_property,
            "group_by": json.dumps(dict(m.group_by)),
        }
        for m in files.meters()
    ]
    tables["customers"] = files.customers().to_dicts()
    tables["products"] = files.products().to_dicts()
    tables["credits"] = pl.read_csv(shipped / "credits.csv", infer_schema=False).to_dicts()
    url = f"sqlite:///{tmp_path / 'platform.db'}"
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    for name, rows in tables.items():
        columns = sorted({k for r in rows for k in r})
        table = sa.Table(name, metadata, *(sa.Column(c, sa.String) for c in columns))
        metadata.create_all(engine, tables=[table])
        with engine.begin() as conn:
            conn.execute(
                table.insert(),
                [{c: (None if r.get(c) is None else str(r[c])) for c in columns} for r in rows],
            )
    engine.dispose()
    sql = ReferenceData(tmp_path / "no-files-here", url)
    plans = sql.plans()
    assert plans == files.plans()
    assert sql.contracts(plans) == files.contracts(plans)
    assert sql.credits().equals(files.credits())
