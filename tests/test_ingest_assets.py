"""Ingest assets through Dagster, on hand-written landing days of odd inputs."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from assets import ingest as ingest_module
from assets.ingest import ingest_landing_day
from assets.usage import daily_usage
from checks import names
from tests.conftest import LandFn, event

DAY = date(2026, 9, 3)


def materialize(
    resources: dict[str, object], day: date, *, usage: bool = True
) -> dg.ExecuteInProcessResult:
    assets = [ingest_landing_day, daily_usage] if usage else [ingest_landing_day]
    return dg.materialize(
        assets, partition_key=day.isoformat(), resources=resources, raise_on_error=True
    )


def table(warehouse: Path, name: str, day: date) -> pl.DataFrame:
    return pl.read_parquet(warehouse / name / f"{day.isoformat()}.parquet")


def test_every_odd_line_lands_in_exactly_one_place(
    land: LandFn, resources: dict[str, object], data_dir: Path
) -> None:
    good = event("e-1", data={"region": "eu"})
    land(
        DAY,
        "a.ndjson",
        [
            good,  # 1 accepted
            good,  # 2 duplicate of line 1
            "{not json",  # 3
            "",  # 4
            "[1, 2]",  # 5
            event("e-2", "llm.completion", data={"tokens": "12.5", "model": "large"}),  # 6 accepted
            event("e-3", "llm.completion", data={"tokens": -3, "model": "large"}),  # 7 negative
            event("e-4", "llm.completion", subject="CUST-9999", data={"tokens": 3}),  # 8
            event("e-5", "nope.unknown"),  # 9 unknown type
            '{"specversion":"1.0","id":5,"source":"s","type":"api.request",'
            '"subject":"CUST-0001","time":"2026-09-03T10:00:00Z"}',  # 10 id not a string
            '{"specversion":"1.0","source":"s","type":"api.request","subject":"CUST-0001",'
            '"time":"2026-09-03T10:00:00Z"}',  # 11 id missing
            event("e-6", time="2026-07-01T10:00:00Z"),  # 12 too late
            event("e-7", time="2036-07-03T10:00:00Z"),  # 13 future
            event("e-8", "user.active", data={"user_id": "u-1"}),  # 14 accepted
            event("e-9", time="2026-09-03 10:00:00"),  # 15 no offset
            event("e-10", "storage.usage", data={"gb": True}),  # 16 not a number
            event("e-11", "seats.snapshot", data={"seats": 7}),  # 17 accepted
            "   ",  # 18 whitespace
        ],
    )
    with (data_dir / "landing/usage" / DAY.isoformat() / "a.ndjson").open("ab") as f:
        f.write(b"\xff\xfe broken bytes\n")  # 19 invalid utf-8
    land(DAY, "b.ndjson.gz", [event("e-2", "llm.completion", data={"tokens": "12.5"})])  # dup

    result = materialize(resources, DAY)
    assert result.success
    warehouse = data_dir / "warehouse"
    usage = table(warehouse, "usage_events", DAY)
    quarantined = table(warehouse, "quarantined_events", DAY)
    duplicates = table(warehouse, "duplicate_events", DAY)

    assert sorted(usage.select("file", "line_no").unique().rows()) == [
        ("2026-09-03/a.ndjson", 1),
        ("2026-09-03/a.ndjson", 6),
        ("2026-09-03/a.ndjson", 14),
        ("2026-09-03/a.ndjson", 17),
    ]
    reasons = dict(quarantined.select("line_no", "reason").iter_rows())
    assert reasons == {
        3: "invalid_json",
        4: "empty_line",
        5: "not_an_object",
        7: "negative_value",
        8: "unknown_customer",
        9: "unknown_event_type",
        10: "invalid_field",
        11: "missing_field",
        12: "too_late",
        13: "future_time",
        15: "invalid_field",
        16: "invalid_value",
        18: "empty_line",
        19: "invalid_encoding",
    }
    detail = dict(quarantined.select("line_no", "detail").iter_rows())
    assert detail[11] == "id is missing"
    assert detail[8] == "subject CUST-9999 is not in customers"
    assert detail[7] == "meter tokens: value is -3, expected zero or more"
    assert quarantined.filter(pl.col("line_no") == 19)["raw_hex"].item() == (
        b"\xff\xfe broken bytes".hex().upper()
    )
    assert duplicates.select("file", "line_no", "first_file", "first_line_no").rows() == [
        ("2026-09-03/a.ndjson", 2, "2026-09-03/a.ndjson", 1),
        ("2026-09-03/b.ndjson.gz", 1, "2026-09-03/a.ndjson", 6),
    ]
    # The llm.completion event feeds two meters: one row each.
    tokens = usage.filter(pl.col("event_id") == "e-2").sort("meter")
    assert tokens["meter"].to_list() == ["llm_requests", "tokens"]
    assert tokens["quantity"].to_list() == [Decimal("1"), Decimal("12.5")]
    assert tokens.filter(pl.col("meter") == "tokens")["dims"].item() == '{"model":"large"}'
    assert usage.filter(pl.col("meter") == "active_users")["unique_value"].item() == "u-1"

    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks[names.LINES_ACCOUNTED_FOR].passed
    assert checks[names.LINES_ACCOUNTED_FOR].metadata["raw"].value == 20
    # 14 of 20 lines quarantined: far above the error threshold, flagged but not blocking.
    rate = checks.pop(names.QUARANTINE_RATE)
    assert not rate.passed and rate.severity == dg.AssetCheckSeverity.ERROR
    assert rate.description == "quarantined above 5% of lines: 2026-09-03 70.0 %"
    assert all(c.passed for c in checks.values()), {k: c.description for k, c in checks.items()}

    daily = table(warehouse, "daily_usage", DAY).sort("meter")
    assert daily.select("meter", "quantity", "event_count").rows() == [
        ("active_users", Decimal("1"), 1),
        ("api_calls", Decimal("1"), 1),
        ("llm_requests", Decimal("1"), 1),
        ("seats", Decimal("7"), 1),
        ("tokens", Decimal("12.5"), 1),
    ]


def test_rerun_is_byte_identical_and_fixing_a_customer_accepts_quarantined_lines(
    land: LandFn, resources: dict[str, object], data_dir: Path
) -> None:
    land(DAY, "a.ndjson", [event("e-1"), event("e-2", subject="CUST-0003")])
    materialize(resources, DAY)
    warehouse = data_dir / "warehouse"
    first = {p.name: p.read_bytes() for p in (warehouse / "usage_events").iterdir()}
    materialize(resources, DAY)
    assert {p.name: p.read_bytes() for p in (warehouse / "usage_events").iterdir()} == first
    assert table(warehouse, "quarantined_events", DAY)["reason"].to_list() == ["unknown_customer"]

    with (data_dir / "reference/customers.csv").open("a") as f:
        f.write("CUST-0003,Initech,US01,USD,US\n")
    materialize(resources, DAY)
    assert table(warehouse, "quarantined_events", DAY).height == 0
    assert sorted(table(warehouse, "usage_events", DAY)["event_id"]) == ["e-1", "e-2"]


def test_copy_landing_days_later_is_a_duplicate_of_the_first_arrival(
    land: LandFn, resources: dict[str, object], data_dir: Path
) -> None:
    original = event("e-1", time="2026-09-02T23:59:00Z")
    land(date(2026, 9, 2), "a.ndjson", [original])
    land(date(2026, 10, 1), "a.ndjson", [original, event("e-2", time="2026-09-30T12:00:00Z")])
    for day in (date(2026, 9, 2), date(2026, 10, 1)):
        materialize(resources, day, usage=False)
    duplicates = table(data_dir / "warehouse", "duplicate_events", date(2026, 10, 1))
    assert duplicates.select("event_id", "first_received_date", "first_file").rows() == [
        ("e-1", date(2026, 9, 2), "2026-09-02/a.ndjson")
    ]


def test_unreadable_gzip_fails_the_day_naming_the_file_and_writes_nothing(
    land: LandFn, resources: dict[str, object], data_dir: Path
) -> None:
    land(DAY, "a.ndjson", [event("e-1")])
    (data_dir / "landing/usage" / DAY.isoformat() / "b.ndjson.gz").write_bytes(b"\x1f\x8bnot gzip")
    with pytest.raises(
        Exception, match=r"landing file 2026-09-03/b\.ndjson\.gz: is not a readable gzip"
    ):
        materialize(resources, DAY)
    assert not (data_dir / "warehouse" / "usage_events").exists()


@pytest.mark.parametrize("kept_rows", [None, 1])
def test_a_range_in_one_run_settles_copies_against_days_still_being_written(
    land: LandFn,
    resources: dict[str, Any],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    kept_rows: int | None,
) -> None:
    # Days of a range overlap: a day is deduplicated while the day before is still being
    # written. With a key window too small to keep earlier days, they are read back from
    # their files; the outcome must be the same either way.
    if kept_rows is not None:
        monkeypatch.setattr(ingest_module._KeyWindow, "MAX_ROWS", kept_rows)
    days = [date(2026, 9, d) for d in (1, 2, 3, 4)]
    e = {n: event(f"e-{n}", time="2026-09-01T10:00:00Z") for n in range(1, 6)}
    land(days[0], "a.ndjson", [e[1], e[2]])
    land(days[1], "a.ndjson", [e[1], e[3]])
    land(days[2], "a.ndjson", [e[3], e[4], e[4]])
    land(days[3], "b.ndjson", [e[2], e[4], e[5]])
    results = list(
        ingest_module.ingest_days(
            days,
            landing=resources["landing"].get(),
            warehouse=resources["warehouse"].get(),
            reference=resources["reference"].get().snapshot(),
            control_db=resources["control_db"].get(),
            rules=resources["ingest_rules"].get(),
            run_id="test",
        )
    )
    assert [(r.day, r.accepted, r.duplicates) for r in results] == [
        (days[0], 2, 0),
        (days[1], 1, 1),
        (days[2], 1, 2),
        (days[3], 1, 2),
    ]
    assert all(c.passed for r in results for c in r.checks.values())
    firsts = table(data_dir / "warehouse", "duplicate_events", days[3])
    assert firsts.select("event_id", "first_received_date", "first_line_no").rows() == [
        ("e-2", days[0], 2),
        ("e-4", days[2], 2),
    ]


def test_an_unreadable_day_in_a_range_keeps_the_days_before_it_done(
    land: LandFn, resources: dict[str, Any], data_dir: Path
) -> None:
    first, second = date(2026, 9, 1), date(2026, 9, 2)
    land(first, "a.ndjson", [event("e-1", time="2026-09-01T10:00:00Z")])
    land(second, "a.ndjson.gz", [event("e-2", time="2026-09-01T10:00:00Z")])
    (data_dir / "landing/usage" / second.isoformat() / "a.ndjson.gz").write_bytes(b"\x1f\x8bxx")
    control_db = resources["control_db"].get()
    with pytest.raises(Exception, match=r"landing file 2026-09-02/a\.ndjson\.gz"):
        list(
            ingest_module.ingest_days(
                [first, second],
                landing=resources["landing"].get(),
                warehouse=resources["warehouse"].get(),
                reference=resources["reference"].get().snapshot(),
                control_db=control_db,
                rules=resources["ingest_rules"].get(),
                run_id="test",
            )
        )
    assert [(d.received_date, d.status) for d in control_db.days()] == [(first, "done")]
    assert not (data_dir / "warehouse/usage_events" / f"{second}.parquet").exists()
