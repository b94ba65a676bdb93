"""The ingest rules, called directly: one line at a time, in milliseconds."""

from __future__ import annotations

import gzip
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from rating import ingest
from rating.errors import LandingFileError
from rating.meters import parse_meters
from tests.conftest import event

DAY = date(2026, 9, 3)
METERS = parse_meters(
    [
        {
            "slug": "tokens",
            "event_type": "llm.completion",
            "aggregation": "SUM",
            "value_property": "$.tokens",
            "group_by": {"model": "$.model"},
        },
        {
            "slug": "users",
            "event_type": "user.active",
            "aggregation": "UNIQUE_COUNT",
            "value_property": "$.user_id",
        },
        {
            "slug": "gb",
            "event_type": "storage.usage",
            "aggregation": "MAX",
            "value_property": "$.gb",
        },
    ],
    "meters.yaml",
)


def run(
    tmp_path: Path, payload: bytes, name: str = "a.ndjson", **kwargs: object
) -> ingest.DayResult:
    path = tmp_path / name
    path.write_bytes(gzip.compress(payload, mtime=0) if name.endswith(".gz") else payload)
    lines, _ = ingest.read_landing([ingest.LandingFile(f"{DAY}/{name}", path)])
    con = ingest.connect()
    return ingest.ingest_day(
        con,
        received_date=DAY,
        lines=lines,
        meters=METERS,
        customer_ids=pa.array(["CUST-0001"]),
        prior_usage_files=[],
        rules=ingest.IngestRules(**kwargs),  # type: ignore[arg-type]
        ingest_batch_id="ib-test",
    )


def verdict(tmp_path: Path, line: str, **kwargs: Any) -> tuple[str, str | None]:
    result = run(tmp_path, (line + "\n").encode(), **kwargs)
    if result.quarantined_events.num_rows:
        row = result.quarantined_events.to_pylist()[0]
        return row["reason"], row["detail"]
    return ("accepted", None) if result.usage_events.num_rows else ("duplicate", None)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ("12.5", Decimal("12.5")),
        (7, Decimal("7")),
        ("1e3", Decimal("1000")),
        (0.1, Decimal("0.1")),
        ("0.000000000001", Decimal("0.000000000001")),
        ("123456789.123456789", Decimal("123456789.123456789")),
        ("1.5000000000000000", Decimal("1.5")),
        (12345678901234567, Decimal("12345678901234567")),
        ("-0", Decimal("0")),
        (0, Decimal("0")),
    ],
)
def test_numeric_values_are_read_exactly(tmp_path: Path, tokens: object, expected: Decimal) -> None:
    line = event("e", "llm.completion", data={"tokens": tokens, "model": "m"})
    result = run(tmp_path, (line + "\n").encode())
    assert result.usage_events.column("quantity").to_pylist() == [expected]


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (
            {"tokens": True},
            "invalid_value",
            "meter tokens: value is true, expected a number or numeric string",
        ),
        (
            {"tokens": "ten"},
            "invalid_value",
            'meter tokens: value is "ten", expected a number or numeric string',
        ),
        (
            {},
            "invalid_value",
            "meter tokens: value is missing, expected a number or numeric string",
        ),
        (
            {"tokens": None},
            "invalid_value",
            "meter tokens: value is null, expected a number or numeric string",
        ),
        ({"tokens": -0.5}, "negative_value", "meter tokens: value is -0.5, expected zero or more"),
        (
            {"tokens": "1_000"},
            "invalid_value",
            'meter tokens: value is "1_000", expected a number or numeric string',
        ),
        (
            {"tokens": " 12"},
            "invalid_value",
            'meter tokens: value is " 12", expected a number or numeric string',
        ),
        (
            {"tokens": "1.0000000000005"},
            "invalid_value",
            'meter tokens: value is "1.0000000000005", more than 12 decimal places',
        ),
        (
            {"tokens": "-0.0000000000001"},
            "invalid_value",
            'meter tokens: value is "-0.0000000000001", more than 12 decimal places',
        ),
        (
            {"tokens": 1e-13},
            "invalid_value",
            "meter tokens: value is 1e-13, more than 12 decimal places",
        ),
        (
            {"tokens": 123456789.123456789},
            "invalid_value",
            "meter tokens: value is 123456789.12345679, "
            "more digits than a JSON number holds exactly; send it as a string",
        ),
        (
            {"tokens": 1e40},
            "invalid_value",
            "meter tokens: value is 1e40, expected a number or numeric string",
        ),
    ],
)
def test_bad_values_are_quarantined_with_the_meter_and_value(
    tmp_path: Path, data: dict[str, object], reason: str, detail: str
) -> None:
    line = event("e", "llm.completion", data=data)
    assert verdict(tmp_path, line) == (reason, detail)


@pytest.mark.parametrize(
    ("time", "reason"),
    [
        ("2026-09-03T10:00:00Z", "accepted"),
        ("2026-09-03T10:00:00.123456+02:00", "accepted"),
        ("2026-07-30T00:00:00Z", "accepted"),  # exactly 35 days before the landing day
        ("2026-07-29T23:59:59.999Z", "too_late"),
        ("2026-09-04T23:59:59Z", "accepted"),  # clock skew within the next day
        ("2026-09-05T00:00:00Z", "future_time"),
        ("2026-09-03", "invalid_field"),
        ("2026-09-03T10:00:00", "invalid_field"),
        ("2026-02-30T10:00:00Z", "invalid_field"),
        ("2026-09-03T24:00:00Z", "invalid_field"),
        ("2026-09-03T10:00:00+05:99", "invalid_field"),
        ("2026-09-03T23:59:60Z", "invalid_field"),
        ("2026-09-03t10:00:00z", "accepted"),
    ],
)
def test_event_time_rules(tmp_path: Path, time: str, reason: str) -> None:
    line = event("e", "storage.usage", time=time, data={"gb": 1})
    assert verdict(tmp_path, line)[0] == reason


def test_lateness_limit_is_configurable(tmp_path: Path) -> None:
    line = event("e", "storage.usage", time="2026-08-20T00:00:00Z", data={"gb": 1})
    assert verdict(tmp_path, line)[0] == "accepted"
    assert verdict(tmp_path, line, lateness_days=7)[0] == "too_late"


def test_unique_count_keeps_the_value_and_structure_errors_come_first(tmp_path: Path) -> None:
    assert verdict(tmp_path, event("e", "user.active", data={"user_id": 42})) == ("accepted", None)
    # An unknown customer whose line is also malformed is reported for the malformation:
    # adding the customer would not mend it.
    line = event("e", "user.active", subject="CUST-9", data={"user_id": ""})
    assert verdict(tmp_path, line)[0] == "invalid_value"
    line = event("e", "user.active", subject="CUST-9", data={"user_id": "u"})
    assert verdict(tmp_path, line) == ("unknown_customer", "subject CUST-9 is not in customers")


def test_crlf_bom_and_missing_final_newline(tmp_path: Path) -> None:
    good = event("e1", "storage.usage", data={"gb": 2})
    other = event("e2", "storage.usage", data={"gb": 3})
    payload = b"\xef\xbb\xbf" + good.encode() + b"\r\n" + other.encode()
    result = run(tmp_path, payload, name="b.ndjson.gz")
    assert result.quarantined_events.num_rows == 0
    assert sorted(result.usage_events.column("line_no").to_pylist()) == [1, 2]


def test_empty_file_has_no_lines(tmp_path: Path) -> None:
    result = run(tmp_path, b"")
    assert result.raw_lines == 0 and result.usage_events.num_rows == 0


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.ndjson.gz"
    path.write_bytes(gzip.compress(b"{}\n" * 100, mtime=0)[:-10])
    with pytest.raises(
        LandingFileError, match=rf"landing file {DAY}/c.ndjson.gz: is not a readable gzip"
    ):
        ingest.read_landing([ingest.LandingFile(f"{DAY}/c.ndjson.gz", path)])


def test_dedup_window_covers_every_day_an_original_can_have_landed() -> None:
    rules = ingest.IngestRules(lateness_days=35, future_days=2)
    assert rules.dedup_window(date(2026, 10, 31)) == (date(2026, 9, 25), date(2026, 10, 30))
    # Worst case: the copy is just inside the lateness limit, the original landed as early
    # as its future-time rule allowed. That landing day must be inside the window.
    copy_day = date(2026, 10, 31)
    earliest_event_day = date(2026, 9, 26)  # copy_day - 35 days
    earliest_original_landing = date(2026, 9, 25)  # event_time < landing + 2 days
    first, _ = rules.dedup_window(copy_day)
    assert first <= earliest_original_landing < earliest_event_day


def test_batch_id_depends_on_day_names_and_content_only() -> None:
    fp = [ingest.FileFingerprint("d/a", "00", 1, 1), ingest.FileFingerprint("d/b", "11", 1, 1)]
    assert ingest.batch_id(DAY, fp) == ingest.batch_id(DAY, list(reversed(fp)))
    assert ingest.batch_id(DAY, fp) != ingest.batch_id(DAY, fp[:1])
    assert ingest.batch_id(DAY, fp).startswith("ib-20260903-")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (" \t ", "empty_line"),
        ("\x0b", "empty_line"),
        ('\t{"specversion": "1.0"}', "missing_field"),
        ("  [1]", "not_an_object"),
        ('"text"', "not_an_object"),
        ("{", "invalid_json"),
    ],
)
def test_whitespace_is_json_whitespace(tmp_path: Path, line: str, reason: str) -> None:
    assert verdict(tmp_path, line)[0] == reason


def test_files_and_line_numbers_follow_each_line_across_a_days_files(tmp_path: Path) -> None:
    """File names and line numbers are worked out from a line's position in the day."""
    gb: dict[str, object] = {"gb": 1}
    contents = {
        "a.ndjson": [event("e1", "storage.usage", data=gb), event("e2", "storage.usage", data=gb)],
        "b.ndjson": [],
        "c.ndjson.gz": [
            "not json",
            event("e2", "storage.usage", data=gb),
            event("e3", "storage.usage", data=gb, subject="CUST-9999"),
            event("e4", "storage.usage", data=gb),
        ],
    }
    files = []
    for name, lines in contents.items():
        path = tmp_path / name
        payload = "".join(f"{line}\n" for line in lines).encode()
        path.write_bytes(gzip.compress(payload, mtime=0) if name.endswith(".gz") else payload)
        files.append(ingest.LandingFile(f"{DAY}/{name}", path))
    lines, _ = ingest.read_landing(files)
    result = ingest.ingest_day(
        ingest.connect(),
        received_date=DAY,
        lines=lines,
        meters=METERS,
        customer_ids=pa.array(["CUST-0001"]),
        prior_usage_files=[],
        rules=ingest.IngestRules(),
        ingest_batch_id="ib-test",
    )
    a, c = f"{DAY}/a.ndjson", f"{DAY}/c.ndjson.gz"
    usage = result.usage_events.select(["event_id", "file", "line_no", "received_date"])
    assert sorted(usage.to_pylist(), key=lambda r: r["event_id"]) == [
        {"event_id": "e1", "file": a, "line_no": 1, "received_date": DAY},
        {"event_id": "e2", "file": a, "line_no": 2, "received_date": DAY},
        {"event_id": "e4", "file": c, "line_no": 4, "received_date": DAY},
    ]
    assert result.usage_events.column("ingest_batch_id").unique().to_pylist() == ["ib-test"]
    duplicate = result.duplicate_events.to_pylist()
    assert [(d["file"], d["line_no"], d["first_file"], d["first_line_no"]) for d in duplicate] == [
        (c, 2, a, 2)
    ]
    quarantined = result.quarantined_events.to_pylist()
    assert [(q["file"], q["line_no"], q["reason"]) for q in quarantined] == [
        (c, 1, "invalid_json"),
        (c, 3, "unknown_customer"),
    ]
    assert result.per_file.to_pylist() == [
        {"file": a, "raw_lines": 2, "accepted": 2, "duplicates": 0, "quarantined": 0},
        {"file": c, "raw_lines": 4, "accepted": 1, "duplicates": 1, "quarantined": 2},
    ]
    keys = result.key_index.to_pydict()
    assert sorted(zip(keys["file"], keys["line_no"], keys["received_date"], strict=True)) == [
        (a, 1, DAY),
        (a, 2, DAY),
        (c, 4, DAY),
    ]
