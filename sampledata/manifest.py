"""The ground-truth manifest: the expected ingest outcome of every landing line
(``manifest/lines.parquet``) and the counts per fault, outcome and reason
(``manifest/summary.json``)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from sampledata.days import to_date
from sampledata.faults import FAULT_REASONS, FAULTS, UNKNOWN_CUSTOMERS

OUTCOMES = ("accepted", "duplicate", "quarantined")
ROW_GROUP_ROWS = 1_000_000
# (generated month, landing month, fault, outcome, reason)
CountKey = tuple[str, str, str, str, str | None]

MANIFEST_SCHEMA = pa.schema(
    [
        ("received_date", pa.date32()),
        ("file", pa.string()),
        ("line_no", pa.int64()),
        ("outcome", pa.string()),
        ("reason", pa.string()),
        ("fault", pa.string()),
        ("source", pa.string()),
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("customer_id", pa.string()),
        ("meter_count", pa.int64()),
    ]
)


class ManifestWriter:
    """Appends each landing day's lines to ``lines.parquet`` (row groups of ROW_GROUP_ROWS,
    in landing order) and counts them for the summary."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.counters: Counter[CountKey] = Counter()
        self._writer = pq.ParquetWriter(
            directory / "lines.parquet", MANIFEST_SCHEMA, compression="zstd"
        )
        self._buffered: list[pa.Table] = []
        self._buffered_rows = 0

    def add(
        self, day: int, pool: pl.DataFrame, names: list[str], sizes: npt.NDArray[np.int64]
    ) -> None:
        """The day's lines, in the order they were split over the files ``names``."""
        nl, nf = pool.height, len(names)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        line_no = np.arange(nl, dtype=np.int64) - np.repeat(bounds[:-1], sizes) + 1
        man = pool.select(
            pl.lit(to_date(day), dtype=pl.Date).alias("received_date"),
            pl.Series("file", names, dtype=pl.String).gather(np.repeat(np.arange(nf), sizes)),
            pl.Series("line_no", line_no),
            "outcome",
            "reason",
            "fault",
            "source",
            "event_id",
            "event_type",
            "customer_id",
            "meter_count",
        )
        self._buffered.append(man.to_arrow().cast(MANIFEST_SCHEMA))
        self._buffered_rows += nl
        if self._buffered_rows >= ROW_GROUP_ROWS:
            self.flush()
        lm = to_date(day).isoformat()[:7]
        for gm, fault, outcome, reason, cnt in (
            pool.group_by(["gen_month", "fault", "outcome", "reason"]).len().iter_rows()
        ):
            self.counters[(gm, lm, fault, outcome, reason)] += cnt

    def flush(self) -> None:
        if self._buffered:
            self._writer.write_table(
                pa.concat_tables(self._buffered), row_group_size=ROW_GROUP_ROWS
            )
        self._buffered, self._buffered_rows = [], 0

    def close(self) -> None:
        self._writer.close()

    def write_summary(self, summary: dict[str, Any]) -> None:
        (self.directory / "summary.json").write_text(
            json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8", newline="\n"
        )


def summary(
    months: list[str],
    events_per_month: int,
    seed: int,
    lateness_days: int,
    counters: Counter[CountKey],
    files_info: dict[str, dict[str, Any]],
    ref_counts: dict[str, int],
    first_day: int,
    last_landing: int,
) -> dict[str, Any]:
    """Counts per fault, outcome and reason: per generated month, per landing month and
    overall; the arguments, the landing files and the reference counts."""

    def empty() -> dict[str, Any]:
        return {
            "lines": 0,
            "faults": {f: 0 for f in FAULTS},
            "outcomes": {o: 0 for o in OUTCOMES},
            "reasons": {},
        }

    by_month = {m: empty() for m in months}
    by_landing: dict[str, dict[str, Any]] = {}
    overall = empty()
    for (gm, lm, fault, outcome, reason), cnt in sorted(
        counters.items(), key=lambda kv: tuple(map(str, kv[0]))
    ):
        for bucket in (
            by_month.setdefault(gm, empty()),
            by_landing.setdefault(lm, empty()),
            overall,
        ):
            bucket["lines"] += cnt
            bucket["faults"][fault] += cnt
            bucket["outcomes"][outcome] += cnt
            if reason is not None:
                bucket["reasons"][reason] = bucket["reasons"].get(reason, 0) + cnt
    for m in months:
        by_month[m]["base_events"] = events_per_month
    return {
        "arguments": {
            "months": months,
            "events_per_month": events_per_month,
            "seed": seed,
            "lateness_days": lateness_days,
        },
        "landing": {
            "first_day": to_date(first_day).isoformat(),
            "last_day": to_date(last_landing).isoformat(),
            "days": len({p.split("/")[0] for p in files_info}),
            "files": len(files_info),
            "gzip_files": sum(1 for v in files_info.values() if v["gzip"]),
            "lines": overall["lines"],
        },
        "months": by_month,
        "landing_months": by_landing,
        "overall": overall,
        "fault_reasons": FAULT_REASONS,
        "unknown_customers": list(UNKNOWN_CUSTOMERS),
        "reference": ref_counts,
        "files": files_info,
    }
