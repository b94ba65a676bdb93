"""Credits granted to a contract for a month (``credits.csv``), e.g. SLA credits.

Each credit becomes a credit memo in the close of its month. It is checked on load: a known
contract in force that month, the contract's currency, a positive amount that is whole in the
currency's minor unit (a credit is money already decided, not a price), a known product.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import pyarrow as pa

from rating.contracts import Contract
from rating.currency import minor_units
from rating.errors import ReferenceDataError
from rating.periods import month_bounds
from rating.plans import Plan, to_decimal

CREDIT_COLUMNS = (
    "credit_id",
    "contract_id",
    "period",
    "amount",
    "currency",
    "product_id",
    "reason",
)
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

CREDIT_SCHEMA = pa.schema(
    [
        ("credit_id", pa.string()),
        ("contract_id", pa.string()),
        ("period", pa.string()),
        ("amount", pa.decimal128(38, 12)),
        ("currency", pa.string()),
        ("product_id", pa.string()),
        ("reason", pa.string()),
    ]
)


def parse_credits(
    records: Iterable[Mapping[str, Any]],
    origin: str,
    contracts: Mapping[str, Contract],
    plans: Mapping[str, Plan],
    products: Iterable[str],
) -> pa.Table:
    """Validated credits as an Arrow table (``CREDIT_SCHEMA``), sorted by credit id."""
    known_products = set(products)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, record in enumerate(records):
        missing = [c for c in CREDIT_COLUMNS if c not in record]
        if missing:
            raise ReferenceDataError(origin, f"row {index + 1}", dict(record), f"missing {missing}")
        credit_id = str(record["credit_id"] or "")
        where = f"credit {credit_id or f'row {index + 1}'}"
        if not credit_id or credit_id in seen:
            raise ReferenceDataError(
                origin, f"{where}.credit_id", credit_id, "a unique id for every credit"
            )
        seen.add(credit_id)
        contract = contracts.get(str(record["contract_id"]))
        if contract is None:
            raise ReferenceDataError(
                origin, f"{where}.contract_id", record["contract_id"], "unknown contract"
            )
        period = str(record["period"])
        if not _PERIOD.match(period):
            raise ReferenceDataError(origin, f"{where}.period", period, "expected YYYY-MM")
        first, last = month_bounds(period)
        last_day = contract.last_day
        if contract.start_date > last or (last_day is not None and last_day < first):
            raise ReferenceDataError(
                origin,
                f"{where}.period",
                period,
                f"a month in which contract {contract.contract_id} is in force",
            )
        currency = plans[contract.plan_id].currency
        if record["currency"] != currency:
            raise ReferenceDataError(
                origin, f"{where}.currency", record["currency"], f"the contract's {currency}"
            )
        amount = to_decimal(origin, f"{where}.amount", record["amount"])
        if amount <= 0 or amount != amount.quantize(Decimal(1).scaleb(-minor_units(currency))):
            raise ReferenceDataError(
                origin,
                f"{where}.amount",
                record["amount"],
                f"a positive amount in whole {currency} minor units "
                f"({minor_units(currency)} decimals)",
            )
        if record["product_id"] not in known_products:
            raise ReferenceDataError(
                origin, f"{where}.product_id", record["product_id"], "one of products.csv"
            )
        rows.append(
            {
                "credit_id": credit_id,
                "contract_id": contract.contract_id,
                "period": period,
                "amount": amount,
                "currency": currency,
                "product_id": str(record["product_id"]),
                "reason": str(record["reason"] or ""),
            }
        )
    rows.sort(key=lambda r: r["credit_id"])
    return pa.Table.from_pylist(rows, schema=CREDIT_SCHEMA)
