"""Reference data from files or from a SQL export with the same columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from rating.errors import ReferenceDataError
from resources.reference import ReferenceData


def test_sql_export_gives_the_same_meters_and_customers_as_the_files(data_dir: Path) -> None:
    files = ReferenceData(data_dir / "reference")
    url = f"sqlite:///{data_dir / 'platform.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE meters (slug TEXT, event_type TEXT, aggregation TEXT, "
                "value_property TEXT, group_by TEXT)"
            )
        )
        for m in files.meters():
            conn.execute(
                sa.text("INSERT INTO meters VALUES (:s, :e, :a, :v, :g)"),
                {
                    "s": m.slug,
                    "e": m.event_type,
                    "a": m.aggregation.value,
                    "v": m.value_property,
                    "g": json.dumps(dict(m.group_by)),
                },
            )
        conn.execute(
            sa.text(
                "CREATE TABLE customers (customer_id TEXT, name TEXT, entity_id TEXT, "
                "currency TEXT, country TEXT)"
            )
        )
        for row in files.customers().iter_rows(named=True):
            conn.execute(
                sa.text(
                    "INSERT INTO customers VALUES (:customer_id, :name, :entity_id, "
                    ":currency, :country)"
                ),
                row,
            )
    engine.dispose()
    sql = ReferenceData(data_dir / "nowhere", url)
    assert sql.meters() == files.meters()
    assert sql.customers().equals(files.customers())
    assert sql.digest() == files.digest()


def test_customer_file_errors_name_file_key_and_value(data_dir: Path) -> None:
    path = data_dir / "reference" / "customers.csv"
    path.write_text(path.read_text() + "CUST-0001,Again,US01,USD,US\n")
    with pytest.raises(ReferenceDataError) as error:
        ReferenceData(data_dir / "reference").customers()
    assert str(error.value) == (f"{path}: customer_id = 'CUST-0001': customer ids must be unique")
    path.write_text("id,name\n1,x\n")
    with pytest.raises(ReferenceDataError, match=r"customers.csv: columns = \['id', 'name'\]"):
        ReferenceData(data_dir / "reference").customers()


def test_meters_file_must_exist_and_parse(data_dir: Path) -> None:
    (data_dir / "reference" / "meters.yaml").write_text("meters: [unclosed\n")
    with pytest.raises(ReferenceDataError, match=r"meters.yaml: meters = None: not valid YAML"):
        ReferenceData(data_dir / "reference").meters()
    (data_dir / "reference" / "meters.yaml").unlink()
    with pytest.raises(ReferenceDataError, match=r"meters.yaml: meters = None: file not found"):
        ReferenceData(data_dir / "reference").meters()
