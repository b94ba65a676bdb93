"""ERP import files: split without breaking balance, rendered deterministically, delivered
as immutable versions with a manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from assets.exports import write_version
from rating.exports import manifest_bytes, render_all, split_journals
from tests.test_close import close

D = Decimal


@pytest.fixture
def journals(data_dir: Path, resources: dict[str, object]) -> pl.DataFrame:
    from tests.test_close import books

    books(data_dir)
    for period in ("2026-09", "2026-10"):
        assert close(resources, period).success
    return pl.read_parquet(data_dir / "warehouse" / "journal_lines" / "2026-10.parquet")


def test_split_journals_keep_every_part_balanced_and_within_the_limit(
    journals: pl.DataFrame,
) -> None:
    parts = split_journals(journals, 6, by_rate=True)
    totals = parts.group_by("part_id").agg(
        lines=pl.len(),
        debit=pl.col("debit").sum(),
        credit=pl.col("credit").sum(),
        functional_debit=pl.col("functional_debit").sum(),
        functional_credit=pl.col("functional_credit").sum(),
        rates=pl.col("fx_rate_date").drop_nulls().n_unique(),
    )
    most_lines = totals["lines"].max()
    assert isinstance(most_lines, int) and most_lines <= 6
    assert (totals["debit"] == totals["credit"]).all()
    assert (totals["functional_debit"] == totals["functional_credit"]).all()
    assert totals["rates"].max() == 1  # one exchange rate per NetSuite journal entry
    assert totals.height > journals["journal_id"].n_unique()
    # Every line but rounding is exported exactly once, with its amounts.
    body = parts.filter(pl.col("account_role") != "rounding")
    original = journals.filter(pl.col("account_role") != "rounding")
    assert sorted(body["source_ref"].to_list()) == sorted(original["source_ref"].to_list())
    assert body["debit"].sum() == original["debit"].sum()
    with pytest.raises(ValueError, match="needs room"):
        split_journals(journals, 2)


def test_renderers_are_deterministic_and_the_manifest_ties(journals: pl.DataFrame) -> None:
    files, manifest = render_all(journals, "2026-10")
    again, manifest_again = render_all(
        journals.sample(fraction=1.0, shuffle=True, seed=1), "2026-10"
    )
    assert [f.data for f in files] == [f.data for f in again]
    assert manifest_bytes(manifest) == manifest_bytes(manifest_again)
    listed = {f["name"]: f for f in manifest["files"]}
    for f in files:
        assert listed[f.name]["sha256"] == hashlib.sha256(f.data).hexdigest()
        assert listed[f.name]["rows"] == f.rows
    totals = manifest["control_totals"]
    assert sum(D(t["debit"]) for t in totals) == journals["debit"].sum()
    assert sum(D(t["functional_credit"]) for t in totals) == journals["functional_credit"].sum()

    netsuite = list(csv.DictReader(io.StringIO(files[2].data.decode())))
    assert list(netsuite[0])[:4] == ["External ID", "Date", "Posting Period", "Subsidiary"]
    by_entry: dict[str, D] = {}
    for row in netsuite:
        amount = D(row["Debit"] or "0") - D(row["Credit"] or "0")
        by_entry[row["External ID"]] = by_entry.get(row["External ID"], D(0)) + amount
        assert row["Account"]
    assert set(by_entry.values()) == {D(0)}
    oracle = list(csv.DictReader(io.StringIO(files[3].data.decode())))
    assert list(oracle[0])[:3] == ["STATUS_CODE", "LEDGER_ID", "ACCOUNTING_DATE"]
    assert {r["STATUS_CODE"] for r in oracle} == {"NEW"}
    assert {r["GROUP_ID"] for r in oracle} == {"202610"}
    accrual = [r for r in oracle if r["USER_JE_CATEGORY_NAME"] == "usage_accrual"]
    assert accrual and {(r["REFERENCE7"], r["REFERENCE8"]) for r in accrual} == {("Y", "2026-11")}


def test_exports_are_versioned_never_overwritten(tmp_path: Path) -> None:
    first, written = write_version(tmp_path, "2026-10", [("a.csv", b"1\n"), ("b.csv", b"2\n")])
    assert written and first.name == "v001"
    same, written = write_version(tmp_path, "2026-10", [("a.csv", b"1\n"), ("b.csv", b"2\n")])
    assert same == first and not written
    changed, written = write_version(tmp_path, "2026-10", [("a.csv", b"1\n"), ("b.csv", b"3\n")])
    assert written and changed.name == "v002"
    assert (first / "b.csv").read_bytes() == b"2\n"  # what was delivered stays as it was
    assert json.loads(manifest_bytes({"period": "2026-10"})) == {"period": "2026-10"}
