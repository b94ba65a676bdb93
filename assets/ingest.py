"""Ingest: a landing day's telemetry into usage_events, quarantined_events, duplicate_events."""

import contextlib
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa

from assets.gates import check_result, failed_checks
from assets.landing import LANDING_FILES
from assets.partition_days import partition_days
from checks import names
from checks.ingest import lines_accounted_for, quarantine_rate
from checks.outcome import CheckOutcome, markdown_table, validate_schema
from checks.schemas import DuplicateEvents, QuarantinedEvents, UsageEvents
from dagster_project.partitions import usage_daily_partition
from dagster_project.settings import Settings, SettingsResource
from rating import ingest as rating_ingest
from resources.control_db import ControlDb, ControlDbResource, FileCounts, window_digest
from resources.landing import IngestRulesResource, Landing, LandingResource
from resources.reference import ReferenceDataResource, ReferenceSnapshot
from resources.warehouse import Warehouse, WarehouseResource

USAGE_EVENTS = "usage_events"
# Footer entry of each usage_events file: the digest of the day's accepted (source, id) keys.
KEYS_DIGEST_KEY = "meterclose.accepted_keys_digest"
QUARANTINED_EVENTS = "quarantined_events"
DUPLICATE_EVENTS = "duplicate_events"
# The largest table a day writes, tuned for the writer's time: dictionaries only where
# values repeat, min/max statistics only where readers filter, and zstd's fastest level
# (2% larger files than level 3, a third less writing time).
_USAGE_EVENTS_PARQUET: dict[str, object] = {
    "compression_level": 1,
    "use_dictionary": [
        "source",
        "customer_id",
        "event_type",
        "meter",
        "usage_date",
        "received_date",
        "quantity",
        "unique_value",
        "dims",
        "file",
        "ingest_batch_id",
    ],
    "write_statistics": [
        "customer_id",
        "event_type",
        "meter",
        "event_time",
        "usage_date",
        "received_date",
        "quantity",
        "file",
        "line_no",
    ],
}


@dataclass
class DayIngest:
    """What one landing day produced: counts and small summaries, never the rows themselves,
    so a month-long backfill holds one day in memory at a time."""

    day: date
    batch_id: str
    raw_lines: int
    accepted: int
    duplicates: int
    duplicates_from_earlier_days: int
    quarantined: int
    reasons: Counter[str]
    by_meter: pl.DataFrame
    customers: set[str]
    preview: pl.DataFrame
    checks: dict[str, CheckOutcome]
    seconds: float
    timings: dict[str, float]


def ingest_one_day(
    day: date,
    *,
    landing: Landing,
    warehouse: Warehouse,
    reference: ReferenceSnapshot,
    control_db: ControlDb,
    rules: rating_ingest.IngestRules,
    run_id: str | None,
) -> DayIngest:
    """Ingest one landing day end to end: read, classify, write, record, check."""
    (result,) = ingest_days(
        [day],
        landing=landing,
        warehouse=warehouse,
        reference=reference,
        control_db=control_db,
        rules=rules,
        run_id=run_id,
    )
    return result


@dataclass
class _Landed:
    files: list[rating_ingest.FileFingerprint]
    lines: pa.Table
    signature: str
    seconds: float


def _read_day(landing: Landing, day: date) -> _Landed:
    started = time.perf_counter()
    signature = landing.signature(day)
    # Every file is read (and every gzip stream checked) before anything is written, so an
    # unreadable file fails the day and leaves the previous outputs as they were.
    lines, fingerprints = rating_ingest.read_landing(landing.files(day))
    return _Landed(fingerprints, lines, signature, time.perf_counter() - started)


class _KeyWindow:
    """The key indexes of the landing days a day's deduplication looks back on.

    Days settled by this run are kept as they were settled: the last one may still be on
    its way to disk. Other days are read from their usage_events file, and kept while the
    file is unchanged. The rows kept are bounded: beyond that, the oldest days are let go
    and read again from their files when needed (the last settled day is always kept).
    """

    MAX_ROWS = 20_000_000  # about 560 MB: a 36-day window of some 15M events a month

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        # day → (file version it was read from, or None if settled here; digest; keys)
        self.kept: dict[date, tuple[tuple[int, int] | None, str, pa.Table]] = {}

    def put(self, day: date, digest: str, keys: pa.Table) -> None:
        self.kept.pop(day, None)
        self.kept[day] = (None, digest, keys)
        for old in sorted(self.kept)[:-1]:
            if sum(k.num_rows for _, _, k in self.kept.values()) <= self.MAX_ROWS:
                break
            if old != day:
                del self.kept[old]

    def lookup(
        self, con: duckdb.DuckDBPyConnection, first: date, last: date
    ) -> tuple[list[pa.Table], str]:
        """The window's key indexes and the digest of the day digests they come from."""
        for day in [d for d in self.kept if not first <= d <= last]:
            del self.kept[day]
        indexes, digests = [], []
        for day in (first + timedelta(days=i) for i in range((last - first).days + 1)):
            kept = self.kept.get(day)
            if kept is not None and kept[0] is None:
                _, digest, keys = kept
            else:
                path = self.warehouse.partition_path(USAGE_EVENTS, day)
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                version = (stat.st_mtime_ns, stat.st_size)
                if kept is not None and kept[0] == version:
                    _, digest, keys = kept
                else:
                    digest = accepted_keys_digest(self.warehouse, path)
                    keys = rating_ingest.read_key_index(con, path)
                    rows = sum(k.num_rows for _, _, k in self.kept.values())
                    if rows + keys.num_rows <= self.MAX_ROWS:
                        self.kept[day] = (version, digest, keys)
            indexes.append(keys)
            digests.append((day, digest))
        return indexes, window_digest(digests)


def ingest_days(
    days: Sequence[date],
    *,
    landing: Landing,
    warehouse: Warehouse,
    reference: ReferenceSnapshot,
    control_db: ControlDb,
    rules: rating_ingest.IngestRules,
    run_id: str | None,
) -> Iterator[DayIngest]:
    """Ingest landing days in order, each day's work overlapping its neighbours'.

    While a day is classified and deduplicated, the next day's files are read and the day
    before is written and checked: the Parquet writer, the checks and the readers hold
    one core each for much of their time, DuckDB both. A day is recorded in the control
    database only once its files are written and checked, and a failure stops the run
    before the next day writes anything.
    """
    window = _KeyWindow(warehouse)
    customer_ids = reference.customers["customer_id"].to_arrow()
    with (
        ThreadPoolExecutor(1, "ingest-read") as reader,
        ThreadPoolExecutor(1, "ingest-write") as writer,
    ):
        reading = reader.submit(_read_day, landing, days[0]) if days else None
        publishing: Future[_Published] | None = None
        try:
            for index, day in enumerate(days):
                assert reading is not None
                landed = reading.result()
                reading = (
                    reader.submit(_read_day, landing, days[index + 1])
                    if index + 1 < len(days)
                    else None
                )
                started = time.perf_counter()
                batch = rating_ingest.batch_id(day, landed.files)
                con = warehouse.duckdb()
                try:
                    classified = rating_ingest.classify_day(
                        con,
                        received_date=day,
                        lines=landed.lines,
                        meters=reference.meters,
                        customer_ids=customer_ids,
                        rules=rules,
                    )
                    first, last = rules.dedup_window(day)
                    # The window digest is taken from the very key indexes deduplication reads,
                    # so it says exactly what this day was compared against.
                    looked_up = time.perf_counter()
                    prior, seen_window = window.lookup(con, first, last)
                    classified.timings["deduplicate"] = time.perf_counter() - looked_up
                    result = rating_ingest.settle_day(
                        con, classified, prior_keys=prior, ingest_batch_id=batch
                    )
                finally:
                    con.close()
                window.put(day, result.accepted_keys_digest, result.key_index)
                seconds = time.perf_counter() - started
                if publishing is not None:
                    done, publishing = publishing, None
                    yield _record(done.result(), control_db)
                control_db.mark_writing(day, run_id)
                publishing = writer.submit(
                    _publish,
                    day,
                    landed,
                    result,
                    batch=batch,
                    warehouse=warehouse,
                    seen_window=seen_window,
                    reference_digest=reference.digest,
                    rules=rules,
                    run_id=run_id,
                    seconds=seconds,
                )
            if publishing is not None:
                done, publishing = publishing, None
                yield _record(done.result(), control_db)
        except BaseException:
            # The day before may have been written whole: record it, so that it is not
            # taken for an interrupted write. Its own failure, if any, yields to this one.
            if publishing is not None:
                with contextlib.suppress(Exception):
                    _record(publishing.result(), control_db)
            raise


@dataclass
class _Published:
    ingest: DayIngest
    record: dict[str, object]


def _publish(
    day: date,
    landed: _Landed,
    result: rating_ingest.DayResult,
    *,
    batch: str,
    warehouse: Warehouse,
    seen_window: str,
    reference_digest: str,
    rules: rating_ingest.IngestRules,
    run_id: str | None,
    seconds: float,
) -> _Published:
    """Check a settled day's tables, write them if they pass, and summarise the day.

    Write, check, then commit: a day that fails a check keeps the previous version of its
    tables, and is recorded as ``checks_failed`` (the close refuses a month holding it)."""
    started = time.perf_counter()
    fingerprints = landed.files
    per_file = {row["file"]: row for row in result.per_file.to_pylist()}
    usage = pl.from_arrow(result.usage_events)
    quarantined = pl.from_arrow(result.quarantined_events)
    duplicates = pl.from_arrow(result.duplicate_events)
    assert isinstance(usage, pl.DataFrame)
    assert isinstance(quarantined, pl.DataFrame)
    assert isinstance(duplicates, pl.DataFrame)
    raw_lines = {fp.name: fp.lines for fp in fingerprints}
    checks = {
        names.USAGE_EVENTS_SCHEMA: validate_schema(UsageEvents, usage),
        names.QUARANTINED_EVENTS_SCHEMA: validate_schema(QuarantinedEvents, quarantined),
        names.DUPLICATE_EVENTS_SCHEMA: validate_schema(DuplicateEvents, duplicates),
        names.LINES_ACCOUNTED_FOR: lines_accounted_for(raw_lines, usage, quarantined, duplicates),
    }
    check_seconds = time.perf_counter() - started
    passed = all(c.passed for c in checks.values())
    if passed:
        warehouse.write(
            {
                USAGE_EVENTS: (
                    day,
                    result.usage_events.replace_schema_metadata(
                        {KEYS_DIGEST_KEY: result.accepted_keys_digest}
                    ),
                ),
                QUARANTINED_EVENTS: (day, result.quarantined_events),
                DUPLICATE_EVENTS: (day, result.duplicate_events),
            },
            {USAGE_EVENTS: _USAGE_EVENTS_PARQUET},
        )
    write_seconds = time.perf_counter() - started - check_seconds
    record: dict[str, object] = dict(
        received_date=day,
        batch_id=batch,
        files=[
            FileCounts(
                file=fp.name,
                sha256=fp.sha256,
                size_bytes=fp.size_bytes,
                raw_lines=fp.lines,
                accepted=int(per_file.get(fp.name, {}).get("accepted", 0)),
                duplicates=int(per_file.get(fp.name, {}).get("duplicates", 0)),
                quarantined=int(per_file.get(fp.name, {}).get("quarantined", 0)),
            )
            for fp in fingerprints
        ],
        accepted_keys_digest=result.accepted_keys_digest,
        window_digest=seen_window,
        reference_digest=reference_digest,
        landing_signature=landed.signature,
        lateness_days=rules.lateness_days,
        run_id=run_id,
        # A blocking check gates only its own run: the close reads this status to know the
        # day passed its checks.
        status="done" if passed else "checks_failed",
    )
    ingest = DayIngest(
        day=day,
        batch_id=batch,
        raw_lines=sum(raw_lines.values()),
        accepted=result.accepted,
        duplicates=duplicates.height,
        duplicates_from_earlier_days=duplicates.filter(
            pl.col("first_received_date") < pl.col("received_date")
        ).height,
        quarantined=quarantined.height,
        reasons=Counter(quarantined["reason"].to_list()),
        by_meter=usage.group_by("meter").agg(rows=pl.len(), quantity=pl.col("quantity").sum()),
        customers=set(usage["customer_id"].unique().to_list()),
        preview=usage.select(
            "customer_id",
            "meter",
            "event_time",
            "quantity",
            "unique_value",
            "dims",
            "file",
            "line_no",
        ).head(5),
        checks=checks,
        seconds=landed.seconds + seconds + (time.perf_counter() - started),
        timings={
            "read": landed.seconds,
            **result.timings,
            "check": check_seconds,
            "write": write_seconds,
        },
    )
    return _Published(ingest, record)


def _record(published: _Published, control_db: ControlDb) -> DayIngest:
    control_db.record_ingest(**published.record)  # type: ignore[arg-type]
    return published.ingest


def accepted_keys_digest(warehouse: Warehouse, path: Path) -> str:
    digest = warehouse.file_metadata(path, KEYS_DIGEST_KEY)
    if digest is None:
        raise ValueError(f"{path}: no {KEYS_DIGEST_KEY} in its footer; re-ingest that day")
    return digest


def stale_landing_days(
    warehouse: Warehouse, control_db: ControlDb, rules: rating_ingest.IngestRules
) -> list[date]:
    """Ingested days to redo: interrupted while writing, or whose window has changed since.

    A day's deduplication compared it with the accepted events of the days before it; if
    one of those was re-ingested and accepts other events now, this day's verdicts may be
    wrong (an event accepted twice, or a duplicate of something no longer accepted).
    """
    current = {
        date.fromisoformat(path.stem): accepted_keys_digest(warehouse, path)
        for path in warehouse.table_dir(USAGE_EVENTS).glob("*.parquet")
    }
    stale = []
    for record in control_db.days():
        if record.status == "writing":
            stale.append(record.received_date)
            continue
        first, last = rules.dedup_window(record.received_date)
        seen = window_digest((d, k) for d, k in current.items() if first <= d <= last)
        if seen != record.window_digest:
            stale.append(record.received_date)
    return stale


_CHECKS = [
    dg.AssetCheckSpec(
        names.USAGE_EVENTS_SCHEMA,
        asset=USAGE_EVENTS,
        blocking=True,
        description="Columns, types, keys and non-negative quantities of accepted events.",
    ),
    dg.AssetCheckSpec(
        names.LINES_ACCOUNTED_FOR,
        asset=USAGE_EVENTS,
        blocking=True,
        description="Every landing line is accepted, a duplicate or quarantined — exactly once.",
    ),
    dg.AssetCheckSpec(
        names.QUARANTINED_EVENTS_SCHEMA,
        asset=QUARANTINED_EVENTS,
        blocking=True,
        description="Every quarantined line has a known reason code, its file and line.",
    ),
    dg.AssetCheckSpec(
        names.DUPLICATE_EVENTS_SCHEMA,
        asset=DUPLICATE_EVENTS,
        blocking=True,
        description="Every duplicate points at an original that arrived before it.",
    ),
]
_CHECK_ASSET = {spec.name: spec.asset_key for spec in _CHECKS}
# Not blocking: a noisy day is ingested all the same, and flagged where people look. Its
# month closes only once a controller has confirmed a day above the error threshold.
_QUARANTINE_RATE = dg.AssetCheckSpec(
    names.QUARANTINE_RATE,
    asset=QUARANTINED_EVENTS,
    blocking=False,
    description=(
        "Each landing day's quarantined share of its lines: a warning above "
        "METERCLOSE_QUARANTINE_WARN_RATE (1 %), an error above METERCLOSE_QUARANTINE_ERROR_RATE "
        "(5 %)."
    ),
)


@dg.multi_asset(
    name="ingest_landing_day",
    specs=[
        dg.AssetSpec(
            USAGE_EVENTS,
            description="Accepted usage events, one row per event × meter it feeds.",
            group_name="ingest",
            kinds={"parquet", "duckdb"},
            deps=[
                # Today's usage partition exists before today's landing day has ended.
                dg.AssetDep(
                    LANDING_FILES,
                    partition_mapping=dg.TimeWindowPartitionMapping(
                        allow_nonexistent_upstream_partitions=True
                    ),
                )
            ],
        ),
        dg.AssetSpec(
            QUARANTINED_EVENTS,
            description="Rejected landing lines with a reason code, detail and the raw text.",
            group_name="ingest",
            kinds={"parquet"},
        ),
        dg.AssetSpec(
            DUPLICATE_EVENTS,
            description="Re-sent copies of accepted events, with where the original landed.",
            group_name="ingest",
            kinds={"parquet"},
        ),
    ],
    partitions_def=usage_daily_partition,
    # One run walks a range of days in order: each day's deduplication reads the days
    # before it, so a backfill in landing order is also the cheapest correct one.
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[*_CHECKS, _QUARANTINE_RATE],
)
def ingest_landing_day(
    context: dg.AssetExecutionContext,
    landing: LandingResource,
    warehouse: WarehouseResource,
    reference: ReferenceDataResource,
    control_db: ControlDbResource,
    ingest_rules: IngestRulesResource,
    settings: SettingsResource,
) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]:
    days = partition_days(context)
    db = control_db.get()
    snapshot = reference.get().snapshot()
    results: list[DayIngest] = []
    ingested = ingest_days(
        days,
        landing=landing.get(),
        warehouse=warehouse.get(),
        reference=snapshot,
        control_db=db,
        rules=ingest_rules.get(),
        run_id=context.run.run_id,
    )
    for index, result in enumerate(ingested, start=1):
        context.log.info(
            f"landing day {result.day} ({index}/{len(days)}): {result.raw_lines} lines → "
            f"{result.accepted} accepted, {result.duplicates} duplicates, "
            f"{result.quarantined} quarantined in {result.seconds:.1f}s"
        )
        results.append(result)
    db.dispose()
    yield from _report(results, warehouse.get())
    yield _quarantine_rate(results, settings.get())


def _report(
    results: list[DayIngest], warehouse: Warehouse
) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]:
    raw = sum(r.raw_lines for r in results)
    quarantined = sum(r.quarantined for r in results)
    days = f"{results[0].day} … {results[-1].day}" if len(results) > 1 else str(results[0].day)
    reasons: Counter[str] = Counter()
    for r in results:
        reasons.update(r.reasons)
    by_meter = (
        pl.concat([r.by_meter for r in results])
        .group_by("meter")
        .agg(pl.col("rows").sum(), pl.col("quantity").sum())
        .sort("meter")
    )
    preview = next((r.preview for r in results if r.preview.height), None)
    checked = [
        check_result(check_name, asset_key, [(r.day, r.checks[check_name]) for r in results])
        for check_name, asset_key in _CHECK_ASSET.items()
    ]
    yield from checked
    failed = failed_checks(checked)
    if failed:
        raise dg.Failure(
            description=(
                "days that failed a check were not written (re-ingest them once fixed): "
                + "; ".join(failed)
            ),
            allow_retries=False,
        )
    yield dg.MaterializeResult(
        asset_key=USAGE_EVENTS,
        metadata={
            "landing_days": days,
            "raw_lines": raw,
            "accepted_events": sum(r.accepted for r in results),
            "dagster/row_count": int(by_meter["rows"].sum()) if by_meter.height else 0,
            "customers": len(set().union(*(r.customers for r in results))),
            "by_meter": dg.MetadataValue.md(markdown_table(by_meter)),
            "preview": dg.MetadataValue.md(
                markdown_table(preview) if preview is not None else "no accepted events"
            ),
            "path": dg.MetadataValue.path(str(warehouse.table_dir(USAGE_EVENTS))),
        },
    )
    yield dg.MaterializeResult(
        asset_key=QUARANTINED_EVENTS,
        metadata={
            "landing_days": days,
            "dagster/row_count": quarantined,
            "share_of_lines": f"{quarantined / raw:.4%}" if raw else "n/a",
            "by_reason": dg.MetadataValue.md(
                "\n".join(
                    ["| reason | lines | meaning |", "|---|---|---|"]
                    + [
                        f"| {k} | {v} | {rating_ingest.REASONS[k]} |"
                        for k, v in sorted(reasons.items())
                    ]
                )
            ),
            "path": dg.MetadataValue.path(str(warehouse.table_dir(QUARANTINED_EVENTS))),
        },
    )
    yield dg.MaterializeResult(
        asset_key=DUPLICATE_EVENTS,
        metadata={
            "landing_days": days,
            "dagster/row_count": sum(r.duplicates for r in results),
            "from_earlier_days": sum(r.duplicates_from_earlier_days for r in results),
            "path": dg.MetadataValue.path(str(warehouse.table_dir(DUPLICATE_EVENTS))),
        },
    )


def _quarantine_rate(results: list[DayIngest], settings: Settings) -> dg.AssetCheckResult:
    days = pl.DataFrame(
        {
            "landing_day": [r.day for r in results],
            "raw_lines": [r.raw_lines for r in results],
            "quarantined": [r.quarantined for r in results],
        },
        schema={"landing_day": pl.Date, "raw_lines": pl.Int64, "quarantined": pl.Int64},
    )
    outcome, level = quarantine_rate(
        days, settings.quarantine_warn_rate, settings.quarantine_error_rate
    )
    return dg.AssetCheckResult(
        asset_key=QUARANTINED_EVENTS,
        check_name=names.QUARANTINE_RATE,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if level == "error" else dg.AssetCheckSeverity.WARN,
        description=outcome.description,
        metadata={
            k: dg.MetadataValue.md(v) if isinstance(v, str) and v.startswith("|") else v
            for k, v in outcome.metadata.items()
        },
    )
