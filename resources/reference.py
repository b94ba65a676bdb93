"""Reference data from ``data/reference/`` files, or the same columns from a SQL database."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import sqlalchemy as sa
import yaml

from rating.contracts import Contract, parse_contracts
from rating.errors import ReferenceDataError
from rating.meters import Meter, parse_meters
from rating.plans import Plan, parse_plans

CUSTOMER_COLUMNS = ("customer_id", "name", "entity_id", "currency", "country")


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
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
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
        """products.csv: product_id, name, product_family, business_unit."""
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
        return frame.select(pl.col(c).cast(pl.String) for c in columns).sort("product_id")

    def plans(self) -> dict[str, Plan]:
        """plans.yaml, checked against meters.yaml and products.csv."""
        return parse_plans(
            self._yaml("plans.yaml", "plans"),
            str(self.directory / "plans.yaml"),
            self.meters(),
            self.products()["product_id"].to_list(),
        )

    def contracts(self, plans: dict[str, Plan] | None = None) -> dict[str, Contract]:
        """contracts.yaml, checked against the plans and the customers' billing currencies."""
        customers = self.customers()
        return parse_contracts(
            self._yaml("contracts.yaml", "contracts"),
            str(self.directory / "contracts.yaml"),
            plans if plans is not None else self.plans(),
            dict(zip(customers["customer_id"], customers["currency"], strict=True)),
        )

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


class ReferenceDataResource(dg.ConfigurableResource):  # type: ignore[misc]
    """Meters, customers and the rest of the reference data (files or a SQL export)."""

    directory: str
    url: str | None = None

    def get(self) -> ReferenceData:
        return ReferenceData(Path(self.directory), self.url)
