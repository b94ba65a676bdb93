"""Reference data from ``data/reference/`` files, or the same columns from a SQL database."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import sqlalchemy as sa
import yaml

from rating.accounting_reference import parse_accounts, parse_entities, parse_fx_rates
from rating.contracts import Contract, parse_contracts
from rating.credits import parse_credits
from rating.errors import ReferenceDataError
from rating.meters import Meter, parse_meters
from rating.plans import Plan, parse_plans
from resources.base import ConfigurableResource

CUSTOMER_COLUMNS = ("customer_id", "name", "entity_id", "currency", "country")


# libyaml's loader when PyYAML was built with it: the same documents, parsed four times
# faster (contracts.yaml is the largest fixed cost of a close).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YAML_LOADER)


def _text(value: Any) -> Any:
    """SQL numbers as the decimal strings the YAML files hold; dates and text as they are."""
    if isinstance(value, float):
        # A binary float has already lost the cents it was meant to hold.
        raise ReferenceDataError(
            "SQL reference export",
            "a numeric column",
            value,
            "store prices and quantities as DECIMAL/NUMERIC or text, never floating point",
        )
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def _json_list(origin: str, charge_id: str, value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        raise ReferenceDataError(
            origin, f"charge {charge_id}.group_by", value, "expected a JSON list of group names"
        ) from None


class ReferenceData:
    """Loads and validates reference data; each load reads the source afresh."""

    def __init__(self, directory: Path, url: str | None = None) -> None:
        self.directory = directory
        self.url = url

    def _origin(self, name: str) -> str:
        return f"{self.url_label()}:{name}" if self.url else str(self.directory / name)

    def url_label(self) -> str:
        # Never echo credentials from a URL into messages or metadata.
        return sa.make_url(self.url).render_as_string(hide_password=True) if self.url else ""

    def _yaml(self, name: str, key: str) -> list[dict[str, Any]]:
        path = self.directory / name
        try:
            document = _load_yaml(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ReferenceDataError(str(path), key, None, "file not found") from None
        except yaml.YAMLError as exc:
            raise ReferenceDataError(str(path), key, None, f"not valid YAML ({exc})") from None
        if not isinstance(document, dict) or not isinstance(document.get(key), list):
            raise ReferenceDataError(
                str(path), key, document, f"expected a top-level '{key}:' list"
            )
        return list(document[key])

    def _sql(self, table: str) -> pl.DataFrame:
        assert self.url is not None
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                reflected = sa.Table(table, sa.MetaData(), autoload_with=conn)
                rows = conn.execute(sa.select(reflected)).mappings().all()
        except sa.exc.SQLAlchemyError as exc:
            raise ReferenceDataError(
                self._origin(table), table, None, f"cannot read ({exc})"
            ) from None
        finally:
            engine.dispose()
        return pl.DataFrame([dict(r) for r in rows], infer_schema_length=None)

    def meters(self) -> list[Meter]:
        if self.url:
            frame = self._sql("meters")
            records = []
            for record in frame.to_dicts():
                group_by = record.get("group_by")
                if isinstance(group_by, str) and group_by.strip():
                    try:
                        record["group_by"] = json.loads(group_by)
                    except json.JSONDecodeError:
                        raise ReferenceDataError(
                            self._origin("meters"),
                            f"meter {record.get('slug')}.group_by",
                            group_by,
                            "expected a JSON object name → $.field",
                        ) from None
                records.append(record)
            return parse_meters(records, self._origin("meters"))
        return parse_meters(self._yaml("meters.yaml", "meters"), self._origin("meters.yaml"))

    def customers(self) -> pl.DataFrame:
        origin = self._origin("customers" if self.url else "customers.csv")
        if self.url:
            frame = self._sql("customers")
        else:
            path = self.directory / "customers.csv"
            if not path.exists():
                raise ReferenceDataError(origin, "customers", None, "file not found")
            frame = pl.read_csv(path, infer_schema=False)
        missing = [c for c in CUSTOMER_COLUMNS if c not in frame.columns]
        if missing:
            raise ReferenceDataError(origin, "columns", frame.columns, f"missing {missing}")
        frame = frame.select(pl.col(c).cast(pl.String) for c in CUSTOMER_COLUMNS)
        blank = frame.filter(pl.col("customer_id").is_null() | (pl.col("customer_id") == ""))
        if blank.height:
            raise ReferenceDataError(origin, "customer_id", "", "every customer needs an id")
        repeated = frame.group_by("customer_id").len().filter(pl.col("len") > 1)
        if repeated.height:
            first = repeated.sort("customer_id")["customer_id"][0]
            raise ReferenceDataError(origin, "customer_id", first, "customer ids must be unique")
        return frame.sort("customer_id")

    def products(self) -> pl.DataFrame:
        """products.csv: product_id, name, product_family, business_unit, and optionally
        the department journal lines carry as an ERP dimension."""
        columns = ("product_id", "name", "product_family", "business_unit")
        origin = self._origin("products" if self.url else "products.csv")
        if self.url:
            frame = self._sql("products")
        else:
            path = self.directory / "products.csv"
            if not path.exists():
                raise ReferenceDataError(origin, "products", None, "file not found")
            frame = pl.read_csv(path, infer_schema=False)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ReferenceDataError(origin, "columns", frame.columns, f"missing {missing}")
        if "department" not in frame.columns:
            frame = frame.with_columns(department=pl.lit(None, pl.String))
        return frame.select(pl.col(c).cast(pl.String) for c in (*columns, "department")).sort(
            "product_id"
        )

    def _csv_records(self, name: str) -> tuple[list[dict[str, Any]], str]:
        if self.url:
            return self._sql_rows(name), self._origin(name)
        path = self.directory / f"{name}.csv"
        if not path.exists():
            raise ReferenceDataError(str(path), name, None, "file not found")
        return pl.read_csv(path, infer_schema=False).to_dicts(), str(path)

    def entities(self) -> pa.Table:
        """entities.csv: legal entities, their functional currency and ERP subsidiary."""
        records, origin = self._csv_records("entities")
        return parse_entities(records, origin)

    def accounts(self) -> pa.Table:
        """accounts.yaml (or an ``accounts`` table: entity_id, role, product_family, account):
        the account of each role and revenue family, per entity."""
        entity_ids = self.entities()["entity_id"].to_pylist()
        if self.url:
            document: dict[str | None, Any] = {}
            for row in self._sql_rows("accounts"):
                roles = document.setdefault(row.get("entity_id"), {})
                if row.get("role") == "revenue":
                    roles.setdefault("revenue", {})[row.get("product_family")] = row.get("account")
                else:
                    roles[row.get("role")] = row.get("account")
            return parse_accounts(document, self._origin("accounts"), entity_ids)
        path = self.directory / "accounts.yaml"
        try:
            document = _load_yaml(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ReferenceDataError(str(path), "accounts", None, "file not found") from None
        if not isinstance(document, dict):
            raise ReferenceDataError(str(path), "accounts", document, "a top-level 'accounts:'")
        return parse_accounts(document.get("accounts"), str(path), entity_ids)

    def fx_rates(self) -> pa.Table:
        """fx_rates.csv: date, from_currency, to_currency, rate, rate_type."""
        records, origin = self._csv_records("fx_rates")
        return parse_fx_rates(records, origin)

    def plans(self) -> dict[str, Plan]:
        """plans.yaml (or the SQL tables below), checked against meters and products."""
        if self.url:
            records, origin = self._sql_plans(), self._origin("plans")
        else:
            records, origin = self._yaml("plans.yaml", "plans"), str(self.directory / "plans.yaml")
        return parse_plans(records, origin, self.meters(), self.products()["product_id"].to_list())

    def contracts(self, plans: dict[str, Plan] | None = None) -> dict[str, Contract]:
        """contracts.yaml (or the SQL tables below), checked against plans and customers."""
        customers = self.customers()
        if self.url:
            records, origin = self._sql_contracts(), self._origin("contracts")
        else:
            records = self._yaml("contracts.yaml", "contracts")
            origin = str(self.directory / "contracts.yaml")
        return parse_contracts(
            records,
            origin,
            plans if plans is not None else self.plans(),
            dict(zip(customers["customer_id"], customers["currency"], strict=True)),
            self.products()["product_id"].to_list(),
        )

    def credits(
        self, contracts: dict[str, Contract] | None = None, plans: dict[str, Plan] | None = None
    ) -> pa.Table:
        """credits.csv (or a ``credits`` table): credits granted per contract and month.
        Optional: without the file there are no credits."""
        plans = plans if plans is not None else self.plans()
        contracts = contracts if contracts is not None else self.contracts(plans)
        if self.url:
            origin = self._origin("credits")
            records = self._sql_rows("credits")
        else:
            path = self.directory / "credits.csv"
            origin = str(path)
            if not path.exists():
                return parse_credits([], origin, contracts, plans, [])
            records = pl.read_csv(path, infer_schema=False).to_dicts()
        return parse_credits(
            records, origin, contracts, plans, self.products()["product_id"].to_list()
        )

    # A subscription platform's export is flat: plans, plan_charges and plan_tiers;
    # contracts, contract_amendments and amendment_tiers. The records are put back into
    # the shape of the YAML files, so both go through the same validation.
    def _sql_rows(self, table: str) -> list[dict[str, Any]]:
        return [
            {k: _text(v) for k, v in row.items() if v is not None}
            for row in self._sql(table).to_dicts()
        ]

    def _sql_plans(self) -> list[dict[str, Any]]:
        tiers: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for tier in sorted(self._sql_rows("plan_tiers"), key=lambda t: int(t["tier_no"])):
            key = (tier.pop("plan_id"), tier.pop("charge_id"))
            tier.pop("tier_no")
            tier.setdefault("up_to", None)
            tiers.setdefault(key, []).append(tier)
        plans = {p["plan_id"]: {**p, "recurring": [], "usage": []} for p in self._sql_rows("plans")}
        for charge in self._sql_rows("plan_charges"):
            plan_id, kind = charge.pop("plan_id"), charge.pop("kind")
            if plan_id not in plans:
                raise ReferenceDataError(
                    self._origin("plan_charges"),
                    f"charge {charge.get('charge_id')}.plan_id",
                    plan_id,
                    "unknown plan",
                )
            if "group_by" in charge:
                charge["group_by"] = _json_list(
                    self._origin("plan_charges"), charge["charge_id"], charge["group_by"]
                )
            if (plan_id, charge["charge_id"]) in tiers:
                charge["tiers"] = tiers[(plan_id, charge["charge_id"])]
            plans[plan_id]["recurring" if kind == "recurring" else "usage"].append(charge)
        return list(plans.values())

    def _sql_contracts(self) -> list[dict[str, Any]]:
        tiers: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for tier in sorted(self._sql_rows("amendment_tiers"), key=lambda t: int(t["tier_no"])):
            key = (tier.pop("contract_id"), tier.pop("seq"))
            tier.pop("tier_no")
            tier.setdefault("up_to", None)
            tiers.setdefault(key, []).append(tier)
        amendments: dict[str, list[dict[str, Any]]] = {}
        for amendment in sorted(self._sql_rows("contract_amendments"), key=lambda a: int(a["seq"])):
            contract_id, seq = amendment.pop("contract_id"), amendment.pop("seq")
            if (contract_id, seq) in tiers:
                amendment["tiers"] = tiers[(contract_id, seq)]
            amendments.setdefault(contract_id, []).append(amendment)
        contracts = []
        for row in self._sql_rows("contracts"):
            record: dict[str, Any] = {
                k: row.get(k)
                for k in ("contract_id", "customer_id", "plan_id", "start_date", "end_date")
            }
            record["billing_alignment"] = row.get("billing_alignment", "calendar")
            if "co_term_with" in row:
                record["co_term_with"] = row["co_term_with"]
            if "prepaid_credit_amount" in row:
                record["prepaid_credit"] = {
                    "amount": row["prepaid_credit_amount"],
                    "expires_on": row.get("prepaid_credit_expires_on"),
                }
            if "minimum_commitment_amount" in row:
                record["minimum_commitment"] = {
                    "amount": row["minimum_commitment_amount"],
                    "interval": row.get("minimum_commitment_interval", "month"),
                    "product_id": row.get("minimum_commitment_product_id"),
                }
            record["amendments"] = amendments.get(str(record["contract_id"]), [])
            contracts.append(record)
        return contracts

    # Everything a close reads, as files or as tables of the SQL export.
    SNAPSHOT_FILES = (
        "meters.yaml",
        "customers.csv",
        "entities.csv",
        "products.csv",
        "plans.yaml",
        "contracts.yaml",
        "credits.csv",
        "accounts.yaml",
        "fx_rates.csv",
    )
    SNAPSHOT_TABLES = (
        "meters",
        "customers",
        "entities",
        "products",
        "plans",
        "plan_charges",
        "plan_tiers",
        "contracts",
        "contract_amendments",
        "amendment_tiers",
        "credits",
        "accounts",
        "fx_rates",
    )

    def snapshot_to(self, root: Path, period: str) -> tuple[str, Path]:
        """Keep a copy of the reference data a close used, under
        ``root/<period>-<digest>/``, and return its digest (SHA-256 over the files' names
        and bytes) and where it is. SQL tables are kept as CSV."""
        staged: dict[str, bytes] = {}
        if self.url:
            for table in self.SNAPSHOT_TABLES:
                try:
                    staged[f"{table}.csv"] = self._sql(table).write_csv().encode()
                except ReferenceDataError:
                    continue  # an optional table the export does not have
        else:
            for name in self.SNAPSHOT_FILES:
                path = self.directory / name
                if path.exists():
                    staged[name] = path.read_bytes()
        h = hashlib.sha256()
        for name in sorted(staged):
            h.update(name.encode() + b"\0" + hashlib.sha256(staged[name]).digest())
        digest = h.hexdigest()
        target = root / f"{period}-{digest[:16]}"
        target.mkdir(parents=True, exist_ok=True)
        for name, data in staged.items():
            (target / name).write_bytes(data)
        return digest, target

    def digest(self) -> str:
        """A hash of the reference data ingest depends on, to tell when a day went stale."""
        return self.snapshot().digest

    def snapshot(self) -> ReferenceSnapshot:
        """Meters and customers read once, for a whole run: every day sees the same terms."""
        meters = self.meters()
        customers = self.customers()
        h = hashlib.sha256()
        for meter in meters:
            h.update(repr(meter).encode())
        h.update(customers.write_csv().encode())
        return ReferenceSnapshot(meters=meters, customers=customers, digest=h.hexdigest()[:16])


@dataclass(frozen=True)
class ReferenceSnapshot:
    meters: list[Meter]
    customers: pl.DataFrame
    digest: str


class ReferenceDataResource(ConfigurableResource):
    """Meters, customers and the rest of the reference data (files or a SQL export)."""

    directory: str
    url: str | None = None

    def get(self) -> ReferenceData:
        return ReferenceData(Path(self.directory), self.url)
