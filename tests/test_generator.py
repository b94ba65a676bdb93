"""Tests of the sample-data generator (the sampledata package).

Besides determinism and bookkeeping, an independent, line-by-line implementation of the
ingest rules (``_judge``) re-derives every landing line's outcome and reason and compares it
with the manifest: the manifest is the answer key other suites grade the ingest against.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import polars as pl
import pytest
import yaml

from sampledata import FAULTS, LINE_FAULTS, UNKNOWN_CUSTOMERS, generate

MONTHS = ["2026-01", "2026-02"]
EVENTS = 1500
SEED = 11
QUARANTINE_FAULTS = (*LINE_FAULTS, "too_late")
# Two runs with the same arguments, and the first run's summary.
Runs = tuple[Path, Path, dict[str, Any]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    a = tmp_path_factory.mktemp("gen_a")
    b = tmp_path_factory.mktemp("gen_b")
    summary = generate(a, MONTHS, EVENTS, SEED)
    generate(b, MONTHS, EVENTS, SEED)
    return a, b, summary


@pytest.fixture(scope="module")
def out(runs: Runs) -> Path:
    return runs[0]


@pytest.fixture(scope="module")
def manifest(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "manifest" / "lines.parquet")


# --------------------------------------------------------------------------- helpers


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _landing_lines(out: Path) -> list[tuple[date, str, int, bytes]]:
    """Every landing line as (received_date, file, line_no, raw bytes), in arrival order."""
    root = out / "landing" / "usage"
    rows = []
    for day_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(day_dir.iterdir()):
            data = f.read_bytes()
            if f.name.endswith(".gz"):
                data = gzip.decompress(data)
            assert data.endswith(b"\n"), f"{f} does not end with a newline"
            for i, raw in enumerate(data.split(b"\n")[:-1], start=1):
                rows.append((date.fromisoformat(day_dir.name), f"{day_dir.name}/{f.name}", i, raw))
    return rows


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_NUMERIC = re.compile(r"^-?\d+(\.\d+)?$")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(name)


def _judge(
    lines: list[tuple[date, str, int, bytes]],
    meters: list[dict[str, Any]],
    customers: set[str],
    lateness_days: int,
) -> list[dict[str, Any]]:
    """The ingest's rules, applied to each line in arrival order (first failing rule wins)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for m in meters:
        by_type.setdefault(m["event_type"], []).append(m)
    seen: set[tuple[str, str]] = set()
    result = []
    for day, file, line_no, raw in lines:
        rec: dict[str, Any] = {
            "received_date": day,
            "file": file,
            "line_no": line_no,
            "source": None,
            "event_id": None,
            "event_type": None,
            "customer_id": None,
            "meter_count": 0,
        }
        reason = None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            reason = "invalid_encoding"
        if reason is None and text.strip(" \t\r") == "":
            reason = "empty_line"
        obj: Any = None
        if reason is None:
            try:
                obj = json.loads(text, parse_constant=_reject_constant)
            except ValueError:
                reason = "invalid_json"
        if reason is None and not isinstance(obj, dict):
            reason = "not_an_object"
        if reason is None:
            for k, col in (
                ("source", "source"),
                ("id", "event_id"),
                ("type", "event_type"),
                ("subject", "customer_id"),
            ):
                if isinstance(obj.get(k), str):
                    rec[col] = obj[k]
            req = ("specversion", "id", "source", "type", "subject", "time")
            if any(obj.get(k) is None or obj.get(k) == "" for k in req):
                reason = "missing_field"
        if reason is None:
            t = obj["time"]
            ok = (
                obj["specversion"] == "1.0"
                and all(isinstance(obj[k], str) for k in ("id", "source", "type", "subject"))
                and isinstance(t, str)
                and _RFC3339.match(t) is not None
                and ("data" not in obj or isinstance(obj["data"], dict))
            )
            if not ok:
                reason = "invalid_field"
        if reason is None and obj["type"] not in by_type:
            reason = "unknown_event_type"
        if reason is None:
            event_time = datetime.fromisoformat(
                obj["time"].replace("Z", "+00:00").replace("z", "+00:00")
            )
            midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if event_time < midnight - timedelta(days=lateness_days):
                reason = "too_late"
            elif event_time >= midnight + timedelta(days=2):
                reason = "future_time"
        if reason is None:
            data = obj.get("data") or {}
            numeric = []
            for m in by_type[obj["type"]]:
                if "value_property" not in m:
                    continue
                v = data.get(m["value_property"].removeprefix("$."))
                if m["aggregation"] == "UNIQUE_COUNT":
                    if v is None:
                        reason = "invalid_value"
                elif isinstance(v, bool) or not (
                    isinstance(v, (int, float)) or (isinstance(v, str) and _NUMERIC.match(v))
                ):
                    reason = "invalid_value"
                else:
                    numeric.append(Decimal(str(v)))
            if reason is None and any(v < 0 for v in numeric):
                reason = "negative_value"
        if reason is None and obj["subject"] not in customers:
            reason = "unknown_customer"
        if reason is not None:
            outcome = "quarantined"
        elif (obj["source"], obj["id"]) in seen:
            outcome = "duplicate"
        else:
            outcome = "accepted"
            seen.add((obj["source"], obj["id"]))
            rec["meter_count"] = len(by_type[obj["type"]])
        rec.update(outcome=outcome, reason=reason)
        result.append(rec)
    return result


def _ref(out: Path, name: str) -> Any:
    path = out / "reference" / name
    if name.endswith(".csv"):
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _judged(
    out: Path, lateness_days: int = 35, extra_customers: tuple[str, ...] = ()
) -> pl.DataFrame:
    meters = _ref(out, "meters.yaml")["meters"]
    customers = {c["customer_id"] for c in _ref(out, "customers.csv")} | set(extra_customers)
    return pl.DataFrame(
        _judge(_landing_lines(out), meters, customers, lateness_days), infer_schema_length=None
    )


COMPARED = [
    "received_date",
    "file",
    "line_no",
    "outcome",
    "reason",
    "source",
    "event_id",
    "event_type",
    "customer_id",
    "meter_count",
]


def _assert_manifest_matches_rules(out: Path, lateness_days: int) -> None:
    manifest = pl.read_parquet(out / "manifest" / "lines.parquet")
    judged = _judged(out, lateness_days).select(COMPARED)
    expected = manifest.select(COMPARED).with_columns(pl.col("meter_count").cast(pl.Int64))
    assert judged.height == expected.height
    diff = judged.with_row_index().join(expected.with_row_index(), on="index", suffix="_m")
    for col in COMPARED:
        bad = diff.filter(pl.col(col).ne_missing(pl.col(f"{col}_m")))
        assert bad.height == 0, f"column {col} differs:\n{bad.head(5)}"


# --------------------------------------------------------------------------- tests


def test_deterministic(runs: Runs) -> None:
    a, b, _ = runs
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    different = [k for k in fa if fa[k] != fb[k]]
    assert different == []


def test_gzip_members_have_no_name_and_no_mtime(out: Path) -> None:
    gz = sorted((out / "landing" / "usage").rglob("*.gz"))
    plain = sorted((out / "landing" / "usage").rglob("*.ndjson"))
    assert gz and plain, "some files are gzip, some are not"
    for p in gz:
        head = p.read_bytes()[:10]
        assert head[:3] == b"\x1f\x8b\x08" and head[3] == 0  # no FNAME or other flags
        assert head[4:8] == b"\x00\x00\x00\x00"  # mtime 0


def test_summary_file_matches_return_value(runs: Runs) -> None:
    a, _, summary = runs
    on_disk = json.loads((a / "manifest" / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["arguments"] == {
        "months": MONTHS,
        "events_per_month": EVENTS,
        "seed": SEED,
        "lateness_days": 35,
    }


def test_manifest_accounts_for_every_line(out: Path, manifest: pl.DataFrame, runs: Runs) -> None:
    summary = runs[2]
    lines = _landing_lines(out)
    per_file = Counter(f for _, f, _, _ in lines)
    assert manifest.height == len(lines) == summary["overall"]["lines"]
    counts = dict(manifest.group_by("file").len().iter_rows())
    assert counts == dict(per_file)
    assert {f: v["lines"] for f, v in summary["files"].items()} == dict(per_file)
    assert manifest.select(pl.col(c) for c in ("received_date", "file", "line_no")).rows() == [
        (d, f, n) for d, f, n, _ in lines
    ]
    assert manifest.equals(manifest.sort(["received_date", "file", "line_no"]))
    days = {d.isoformat() for d in manifest["received_date"]}
    for f in per_file:
        assert f.split("/")[0] in days
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}/events-\d{2}\.ndjson(\.gz)?", f)
    for _day, n in Counter(f.split("/")[0] for f in per_file).items():
        assert 1 <= n <= 4


def test_manifest_schema(manifest: pl.DataFrame) -> None:
    assert manifest.schema == pl.Schema(
        {
            "received_date": pl.Date,
            "file": pl.String,
            "line_no": pl.Int64,
            "outcome": pl.String,
            "reason": pl.String,
            "fault": pl.String,
            "source": pl.String,
            "event_id": pl.String,
            "event_type": pl.String,
            "customer_id": pl.String,
            "meter_count": pl.Int64,
        }
    )
    assert set(manifest["outcome"]) <= {"accepted", "duplicate", "quarantined"}
    assert set(manifest["fault"]) == set(FAULTS)
    assert (
        manifest.filter(
            (pl.col("outcome") == "quarantined") != pl.col("reason").is_not_null()
        ).height
        == 0
    )
    assert (
        manifest.filter((pl.col("outcome") != "accepted") & (pl.col("meter_count") != 0)).height
        == 0
    )


def test_manifest_matches_ingest_rules(out: Path) -> None:
    _assert_manifest_matches_rules(out, 35)


def test_fault_counts(out: Path, manifest: pl.DataFrame, runs: Runs) -> None:
    summary = runs[2]
    # the summary's per-fault counts are the manifest's
    assert dict(manifest.group_by("fault").len().iter_rows()) == {
        f: n for f, n in summary["overall"]["faults"].items() if n
    }
    for month in MONTHS:
        faults = summary["months"][month]["faults"]
        for f in (*QUARANTINE_FAULTS, "duplicate_same_day", "duplicate_later_day", "late_event"):
            assert faults[f] >= 1, (month, f)
        # ~1% duplicates, half same day, half later; ~0.2% late events
        assert faults["duplicate_same_day"] + faults["duplicate_later_day"] == round(0.01 * EVENTS)
        assert faults["duplicate_same_day"] == round(0.01 * EVENTS) // 2
        assert faults["late_event"] >= 1
        assert summary["months"][month]["outcomes"]["accepted"] == EVENTS
    # each fault has its outcome and reason
    expect: dict[str, tuple[str, set[str | None]]] = {
        "none": ("accepted", {None}),
        "late_event": ("accepted", {None}),
        "duplicate_same_day": ("duplicate", {None}),
        "duplicate_later_day": ("duplicate", {None}),
        "mistyped_field": ("quarantined", {"invalid_field", "invalid_value"}),
        "negative_quantity": ("quarantined", {"negative_value"}),
    }
    for fault, outcome, reason in (
        manifest.select("fault", "outcome", "reason").unique().iter_rows()
    ):
        want_outcome, want_reasons = expect.get(fault, ("quarantined", {fault}))
        assert outcome == want_outcome and reason in want_reasons, (fault, outcome, reason)
    # at least one too_late line is a re-sent copy of an accepted event
    tl = manifest.filter(pl.col("fault") == "too_late").select("source", "event_id")
    acc = manifest.filter(pl.col("outcome") == "accepted").select("source", "event_id")
    assert tl.join(acc, on=["source", "event_id"]).height >= 1
    # later-day duplicates land on a later day than their original
    first = manifest.filter(pl.col("outcome") == "accepted").select(
        "source", "event_id", pl.col("received_date").alias("first_date")
    )
    later = manifest.filter(pl.col("fault") == "duplicate_later_day").join(
        first, on=["source", "event_id"]
    )
    assert later.height == summary["overall"]["faults"]["duplicate_later_day"]
    assert (later["received_date"] > later["first_date"]).all()
    same = manifest.filter(pl.col("fault") == "duplicate_same_day").join(
        first, on=["source", "event_id"]
    )
    assert (same["received_date"] == same["first_date"]).all()


def test_accepted_events_per_event_month(out: Path) -> None:
    judged = _judged(out)
    lines = {(d, f, n): raw for d, f, n, raw in _landing_lines(out)}
    months: Counter[str] = Counter()
    late = 0
    for r in judged.filter(pl.col("outcome") == "accepted").iter_rows(named=True):
        t = json.loads(lines[(r["received_date"], r["file"], r["line_no"])])["time"]
        months[t[:7]] += 1
        late += t[:7] < r["received_date"].isoformat()[:7]
    assert months == {m: EVENTS for m in MONTHS}
    assert late > 0, "some events land after their month ended"


def test_unknown_customers_become_accepted(out: Path, manifest: pl.DataFrame) -> None:
    judged = _judged(out, extra_customers=UNKNOWN_CUSTOMERS)
    was_unknown = manifest["reason"] == "unknown_customer"
    assert was_unknown.sum() >= len(MONTHS)
    assert set(manifest.filter(was_unknown)["customer_id"]) <= set(UNKNOWN_CUSTOMERS)
    assert set(judged.filter(was_unknown)["outcome"]) == {"accepted"}
    # nothing else changes
    assert (
        judged.filter(~was_unknown)["outcome"].to_list()
        == manifest.filter(~was_unknown)["outcome"].to_list()
    )


@pytest.mark.parametrize(("events", "lateness"), [(5, 35), (300, 3), (200, 0)])
def test_small_and_edge_runs_match_rules(tmp_path: Path, events: int, lateness: int) -> None:
    summary = generate(tmp_path, ["2026-02", "2026-03"], events, 3, lateness_days=lateness)
    _assert_manifest_matches_rules(tmp_path, lateness)
    for month in ("2026-02", "2026-03"):
        faults = summary["months"][month]["faults"]
        for f in QUARANTINE_FAULTS:
            assert faults[f] >= 1, (month, f)
        assert summary["months"][month]["outcomes"]["accepted"] == events


def test_small_sample_is_small(out: Path) -> None:
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert total < 3_000_000  # 2 x 1500 events; the 2 x 4000 sample shipped in data/ is ~3 MB


# --------------------------------------------------------------------------- reference data

_DEC = re.compile(r"^-?\d+(\.\d+)?$")


def _walk_numbers(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk_numbers(v, f"{path}[{i}]")
    else:
        yield path, obj


def test_reference_files_are_consistent(out: Path) -> None:
    entities = {e["entity_id"]: e for e in _ref(out, "entities.csv")}
    customers = {c["customer_id"]: c for c in _ref(out, "customers.csv")}
    products = {p["product_id"]: p for p in _ref(out, "products.csv")}
    meters = {m["slug"]: m for m in _ref(out, "meters.yaml")["meters"]}
    plans = {p["plan_id"]: p for p in _ref(out, "plans.yaml")["plans"]}
    contracts = _ref(out, "contracts.yaml")["contracts"]
    credits = _ref(out, "credits.csv")
    accounts = _ref(out, "accounts.yaml")["accounts"]
    fx = _ref(out, "fx_rates.csv")

    assert {"US01", "EU01", "UK01", "JP01"} <= set(entities)
    assert {e["functional_currency"] for e in entities.values()} == {"USD", "EUR", "GBP", "JPY"}
    assert set(meters) == {
        "api_calls",
        "tokens",
        "llm_requests",
        "active_users",
        "storage_gb",
        "seats",
        "payment_volume",
        "payments",
    }
    for m in meters.values():
        assert m["aggregation"] in {"SUM", "COUNT", "UNIQUE_COUNT", "MAX", "LATEST"}
        assert ("value_property" in m) == (m["aggregation"] != "COUNT")
        assert isinstance(m["group_by"], dict)

    assert 150 <= len(customers) <= 250
    for c in customers.values():
        assert c["entity_id"] in entities
        assert re.fullmatch(r"CUST-\d{4}", c["customer_id"])
    cross = [
        c
        for c in customers.values()
        if c["currency"] != entities[c["entity_id"]]["functional_currency"]
    ]
    assert cross, "some customers are billed in a currency other than their entity's"
    assert any(c["currency"] == "JPY" and c["entity_id"] == "JP01" for c in customers.values())
    assert not set(UNKNOWN_CUSTOMERS) & set(customers)

    models, intervals = set(), set()
    for p in plans.values():
        assert p["currency"] in {"USD", "EUR", "GBP", "JPY"}
        for r in p["recurring"]:
            assert r["product_id"] in products
            intervals.add(r["interval"])
        for u in p["usage"]:
            assert u["meter"] in meters, u
            assert u["product_id"] in products
            models.add(u["model"])
            if "group_by" in u:
                assert set(u["group_by"]) <= set(meters[u["meter"]]["group_by"])
        for path, v in _walk_numbers(p):
            if path.endswith(
                ("amount", "rate", "size", "units", "up_to", "quantity", "events", "_event")
            ):
                assert v is None or (isinstance(v, str) and _DEC.match(v)), (p["plan_id"], path, v)
                if p["currency"] == "JPY" and path.endswith("amount") and v is not None:
                    assert "." not in v, (p["plan_id"], path, v)
    assert models == {
        "per_unit",
        "graduated",
        "volume",
        "package",
        "percentage",
        "graduated_percentage",
    }
    assert intervals == {"month", "year"}
    pct_fields = set().union(
        *(u.keys() for p in plans.values() for u in p["usage"] if u["model"] == "percentage")
    )
    assert {
        "rate",
        "fixed_amount",
        "free_events",
        "free_amount",
        "min_per_event",
        "max_per_event",
    } <= pct_fields
    assert {p["currency"] for p in plans.values()} == {"USD", "EUR", "GBP", "JPY"}

    families = {p["product_family"] for p in products.values()}
    for eid in entities:
        acc = accounts[eid]
        for role in (
            "receivable",
            "unbilled_receivable",
            "deferred_revenue",
            "contract_liability",
            "customer_credits",
            "fx_gain_loss",
            "rounding",
        ):
            assert isinstance(acc[role], str)
        assert families <= set(acc["revenue"])

    ids = [k["contract_id"] for k in contracts]
    assert len(ids) == len(set(ids))
    amend_types: Counter[str] = Counter()
    features: Counter[str] = Counter()
    for k in contracts:
        assert k["customer_id"] in customers
        assert k["plan_id"] in plans
        cur = customers[k["customer_id"]]["currency"]
        assert plans[k["plan_id"]]["currency"] == cur
        assert isinstance(k["start_date"], date)
        assert k["end_date"] is None or k["end_date"] > k["start_date"]
        assert k["billing_alignment"] in ("calendar", "anniversary")
        features[k["billing_alignment"]] += 1
        features["prepaid"] += "prepaid_credit" in k
        features["commitment"] += "minimum_commitment" in k
        if k["end_date"] is not None:
            features["ending"] += 1
        plan = plans[k["plan_id"]]
        for a in k["amendments"]:
            amend_types[a["type"]] += 1
            assert k["start_date"] < a["effective_date"]
            assert a["effective_date"].day != 1, "amendments are mid-month"
            if a["type"] == "plan_change":
                assert a["plan_id"] in plans and plans[a["plan_id"]]["currency"] == cur
            elif a["type"] == "price_override":
                charges = {c["charge_id"] for c in plan["recurring"] + plan["usage"]}
                assert a["charge_id"] in charges
                assert {"unit_amount", "tiers", "amount"} & set(a)
            elif a["type"] == "quantity_change":
                rec = {c["charge_id"]: c for c in plan["recurring"]}
                assert "quantity" in rec[a["charge_id"]]
                assert _DEC.match(a["quantity"])
            else:
                assert a["type"] == "cancellation"
    assert set(amend_types) == {"plan_change", "price_override", "quantity_change", "cancellation"}
    assert (
        features["anniversary"]
        and features["prepaid"]
        and features["commitment"]
        and features["ending"]
    )
    first = date(2026, 1, 1)
    assert any(k["start_date"] > first and k["start_date"].day != 1 for k in contracts), (
        "a mid-month start"
    )
    # one customer has a second, co-termed contract
    per_customer = Counter(k["customer_id"] for k in contracts)
    multi = [c for c, n in per_customer.items() if n > 1]
    assert multi
    ends = {k["end_date"] for k in contracts if k["customer_id"] == multi[0]}
    assert len(ends) == 1 and None not in ends

    by_id = {k["contract_id"]: k for k in contracts}
    assert credits
    for cr in credits:
        assert cr["contract_id"] in by_id
        assert cr["currency"] == plans[by_id[cr["contract_id"]]["plan_id"]]["currency"]
        assert cr["period"] in MONTHS
        assert _DEC.match(cr["amount"])

    functional = {e: v["functional_currency"] for e, v in entities.items()}
    needed = {(c["currency"], functional[c["entity_id"]]) for c in customers.values()}
    needed = {p for p in needed if p[0] != p[1]}
    have: dict[tuple[str, str], set[str]] = {}
    for r in fx:
        assert r["rate_type"] == "daily"
        assert re.fullmatch(r"\d+\.\d{8}", r["rate"])
        have.setdefault((r["from_currency"], r["to_currency"]), set()).add(r["date"])
    assert needed <= set(have)
    want_days = {(date(2025, 12, 22) + timedelta(days=i)).isoformat() for i in range(31 + 28 + 20)}
    for pair in needed:
        assert want_days <= have[pair]
