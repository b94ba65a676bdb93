"""The rating benchmark on a small month: its events are valid usage_events, and its plain
pandas rating reproduces meterclose's totals to the cent."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from benchmarks import rating as bench
from checks.schemas import UsageEvents


def test_small_month_rates_the_same_in_meterclose_and_pandas(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    reference = bench.prepare_reference(tmp_path, seed=5)
    work = tmp_path / "20000"
    written = bench.prepare_events(work, reference, 20_000, seed=5)
    files = bench.event_files(work)
    assert len(files) == 30
    assert written["written_rows"] == sum(
        pl.scan_parquet(f).select(pl.len()).collect().item() for f in files
    )
    UsageEvents.validate(pl.read_parquet(files[0]))

    daily = bench.prepare_daily(work, reference, "1GB")
    assert daily["rows"] > 0
    ours = bench.run_meterclose(reference.parent, work, "1GB")
    theirs = bench.run_pandas(reference.parent, work)

    def exact(totals: dict[str, str]) -> dict[str, Decimal]:
        return {currency: Decimal(amount) for currency, amount in totals.items()}

    assert exact(ours["totals"]) == exact(theirs["totals"])
    assert ours["lines"] == theirs["lines"]
