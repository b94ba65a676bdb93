"""Shared fixtures: a throw-away data root with reference data and hand-written landing days."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest

# Tests set the product's clock (and where partitions start) before anything defines the
# partitions, so no test depends on the real date.
TODAY = "2026-12-06"
os.environ["METERCLOSE_TODAY"] = TODAY
os.environ["METERCLOSE_FIRST_DAY"] = "2026-01-01"

from dagster_project.resources import build_resources  # noqa: E402
from dagster_project.settings import Settings  # noqa: E402
from tests import tryton  # noqa: E402

METERS_YAML = """
meters:
  - slug: api_calls
    event_type: api.request
    aggregation: COUNT
    group_by: {region: $.region}
  - slug: tokens
    event_type: llm.completion
    aggregation: SUM
    value_property: $.tokens
    group_by: {model: $.model}
  - slug: llm_requests
    event_type: llm.completion
    aggregation: COUNT
  - slug: active_users
    event_type: user.active
    aggregation: UNIQUE_COUNT
    value_property: $.user_id
  - slug: storage_gb
    event_type: storage.usage
    aggregation: MAX
    value_property: $.gb
  - slug: seats
    event_type: seats.snapshot
    aggregation: LATEST
    value_property: $.seats
"""

CUSTOMERS_CSV = """customer_id,name,entity_id,currency,country
CUST-0001,Acme Corp,US01,USD,US
CUST-0002,Globex GmbH,EU01,EUR,DE
"""


def event(
    event_id: str,
    event_type: str = "api.request",
    *,
    subject: str = "CUST-0001",
    time: str = "2026-09-03T10:00:00.000Z",
    source: str = "//ingest.example.com/eu-west-1",
    data: dict[str, object] | None = None,
) -> str:
    """One CloudEvents line, as a metering client would send it."""
    body: dict[str, object] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "subject": subject,
        "time": time,
    }
    if data is not None:
        body["data"] = data
    return json.dumps(body, separators=(",", ":"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "reference").mkdir(parents=True)
    (root / "reference" / "meters.yaml").write_text(METERS_YAML)
    (root / "reference" / "customers.csv").write_text(CUSTOMERS_CSV)
    (root / "landing" / "usage").mkdir(parents=True)
    return root


def settings_for(root: Path) -> Settings:
    """Settings for a throw-away data root: its own warehouse and SQLite control DB."""
    return Settings(
        data_dir=root,
        warehouse_dir=root / "warehouse",
        control_db_url=f"sqlite:///{root / 'control.db'}",
        reference_url=None,
        lateness_days=35,
    )


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return settings_for(data_dir)


@pytest.fixture
def resources(settings: Settings) -> dict[str, object]:
    return build_resources(settings)


LandFn = Callable[[date, str, list[str] | bytes], Path]


@pytest.fixture
def land(data_dir: Path) -> LandFn:
    """Write a landing file: a list of lines (newline-terminated) or exact bytes."""

    def _land(day: date, name: str, lines: list[str] | bytes) -> Path:
        folder = data_dir / "landing" / "usage" / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        payload = lines if isinstance(lines, bytes) else "".join(f"{x}\n" for x in lines).encode()
        if name.endswith(".gz"):
            payload = gzip.compress(payload, mtime=0)
        path = folder / name
        path.write_bytes(payload)
        return path

    return _land


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throw-away Dagster instance, for runs that go through ``DagsterInstance.get()``."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tryton_erp() -> Iterator[tryton.TrytonServer]:
    """One Tryton (PostgreSQL + trytond, provisioned once, cached) for the whole session;
    tests take pristine databases from it with ``fresh_database``."""
    if not tryton.available():
        pytest.skip("needs PostgreSQL 15 binaries and trytond")
    with tryton.tryton_server() as server:
        yield server


def confirm_calendar(settings: Settings, period: str, by: str = "test-controller") -> list[date]:
    """Confirm every landing day of the month's calendar that has no files, as a controller
    would for a test's hand-written landing days; returns the days confirmed."""
    from lifecycle import facts, rules
    from resources.control_db import ControlDb

    db = ControlDb(settings.control_db_url)
    db.migrate()
    try:
        missing = [
            d.day
            for d in facts.calendar_days(settings, db, period, set())
            if d.status == rules.MISSING and d.confirmed_by is None
        ]
        for day in missing:
            db.confirm_day(day, by, "test: only hand-written landing days", rules.MISSING, None)
    finally:
        db.dispose()
    return missing


# The suite runs on pytest-xdist's workers (`-n auto --dist loadgroup`). Tests that share
# one expensive server stay together on one worker: the Tryton ERP (one PostgreSQL cluster
# provisioned per session) and the Dagster UI (one `dagster dev` per module).
_SERVER_GROUPS = {"test_erp_publish": "tryton", "test_tryton": "tryton"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.stem
        group = "browser" if item.path.parent.name == "browser" else _SERVER_GROUPS.get(module)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
