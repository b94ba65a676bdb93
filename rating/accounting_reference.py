"""The general-ledger side of the reference data: legal entities, the account map and FX
rates, validated on load with errors naming the file, key and value.

An account map that lacks a product family's revenue account is not a load error: the
journal lines that need it are held back and reported as business exceptions (a controller
adds the account), while everything else still closes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow as pa

from rating.currency import MINOR_UNITS
from rating.errors import ReferenceDataError
from rating.plans import to_decimal

# The balance-sheet and P&L roles a journal line books to, besides revenue by family.
ROLES = (
    "receivable",
    "unbilled_receivable",
    "deferred_revenue",
    "contract_liability",
    "customer_credits",
    "fx_gain_loss",
    "rounding",
    "breakage",
)
ENTITY_SCHEMA = pa.schema(
    [
        ("entity_id", pa.string()),
        ("name", pa.string()),
        ("functional_currency", pa.string()),
        ("erp_subsidiary", pa.string()),
    ]
)
ACCOUNT_SCHEMA = pa.schema(
    [
        ("entity_id", pa.string()),
        ("role", pa.string()),
        ("product_family", pa.string()),
        ("account", pa.string()),
    ]
)
FX_SCHEMA = pa.schema(
    [
        ("date", pa.date32()),
        ("from_currency", pa.string()),
        ("to_currency", pa.string()),
        ("rate", pa.decimal128(38, 12)),
        ("rate_type", pa.string()),
    ]
)


def parse_entities(records: Iterable[Mapping[str, Any]], origin: str) -> pa.Table:
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, record in enumerate(records):
        entity_id = str(record.get("entity_id") or "")
        where = f"entity {entity_id or f'row {index + 1}'}"
        if not entity_id or entity_id in seen:
            raise ReferenceDataError(origin, f"{where}.entity_id", entity_id, "a unique id")
        seen.add(entity_id)
        currency = record.get("functional_currency")
        if currency not in MINOR_UNITS:
            raise ReferenceDataError(
                origin, f"{where}.functional_currency", currency, "an ISO 4217 currency code"
            )
        rows.append(
            {
                "entity_id": entity_id,
                "name": str(record.get("name") or ""),
                "functional_currency": currency,
                "erp_subsidiary": str(record.get("erp_subsidiary") or ""),
            }
        )
    rows.sort(key=lambda r: r["entity_id"])
    return pa.Table.from_pylist(rows, schema=ENTITY_SCHEMA)


def parse_accounts(document: Any, origin: str, entity_ids: Iterable[str]) -> pa.Table:
    """``accounts:`` entity → {role: account, revenue: {product family: account}}."""
    if not isinstance(document, Mapping):
        raise ReferenceDataError(origin, "accounts", document, "a mapping of entity → roles")
    rows: list[dict[str, Any]] = []
    for entity_id in sorted(entity_ids):
        roles = document.get(entity_id)
        if not isinstance(roles, Mapping):
            raise ReferenceDataError(
                origin, f"accounts.{entity_id}", roles, "every entity of entities.csv"
            )
        for role in ROLES:
            account = roles.get(role)
            if not isinstance(account, str | int) or isinstance(account, bool) or not account:
                raise ReferenceDataError(
                    origin, f"accounts.{entity_id}.{role}", account, "an account number"
                )
            rows.append(
                {
                    "entity_id": entity_id,
                    "role": role,
                    "product_family": None,
                    "account": str(account),
                }
            )
        revenue = roles.get("revenue") or {}
        if not isinstance(revenue, Mapping):
            raise ReferenceDataError(
                origin, f"accounts.{entity_id}.revenue", revenue, "product family → account"
            )
        for family, account in sorted(revenue.items()):
            if not isinstance(account, str | int) or isinstance(account, bool) or not account:
                raise ReferenceDataError(
                    origin, f"accounts.{entity_id}.revenue.{family}", account, "an account number"
                )
            rows.append(
                {
                    "entity_id": entity_id,
                    "role": "revenue",
                    "product_family": str(family),
                    "account": str(account),
                }
            )
    unknown = sorted(set(document) - set(entity_ids))
    if unknown:
        raise ReferenceDataError(
            origin, f"accounts.{unknown[0]}", unknown[0], "an entity of entities.csv"
        )
    return pa.Table.from_pylist(rows, schema=ACCOUNT_SCHEMA)


def parse_fx_rates(records: Iterable[Mapping[str, Any]], origin: str) -> pa.Table:
    """Rates as quoted: 1 ``from_currency`` = ``rate`` ``to_currency``, per day and type."""
    rows: list[dict[str, Any]] = []
    seen: set[tuple[date, str, str, str]] = set()
    for index, record in enumerate(records):
        where = f"row {index + 2}"
        try:
            day = date.fromisoformat(str(record.get("date")))
        except ValueError:
            raise ReferenceDataError(
                origin, f"{where}.date", record.get("date"), "a date as YYYY-MM-DD"
            ) from None
        pair = []
        for key in ("from_currency", "to_currency"):
            if record.get(key) not in MINOR_UNITS:
                raise ReferenceDataError(
                    origin, f"{where}.{key}", record.get(key), "an ISO 4217 currency code"
                )
            pair.append(str(record[key]))
        rate = to_decimal(origin, f"{where}.rate", record.get("rate"), positive=True)
        rate_type = str(record.get("rate_type") or "")
        if not rate_type:
            raise ReferenceDataError(origin, f"{where}.rate_type", rate_type, "e.g. daily")
        key4 = (day, pair[0], pair[1], rate_type)
        if key4 in seen:
            raise ReferenceDataError(
                origin, where, record, "one rate per day, currency pair and rate type"
            )
        seen.add(key4)
        rows.append(
            {
                "date": day,
                "from_currency": pair[0],
                "to_currency": pair[1],
                "rate": Decimal(rate),
                "rate_type": rate_type,
            }
        )
    rows.sort(key=lambda r: (r["date"], r["from_currency"], r["to_currency"], r["rate_type"]))
    return pa.Table.from_pylist(rows, schema=FX_SCHEMA)
