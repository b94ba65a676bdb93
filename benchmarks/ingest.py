"""Ingest benchmark: a generated month through meterclose's ingest, beside plain JSON readers.

    python -m benchmarks.ingest --events 10000000 [--month 2026-09] [--work .bench/ingest]

Measured in one run, each in a fresh process so peak memory is its own:
- ``meterclose``: the production ingest path (read, classify, deduplicate, write Parquet,
  record in the control database, Pandera checks), day by day as the ingest asset runs a
  range, on the files as landed;
- ``duckdb_read_json`` and ``polars_read_ndjson``: load the same files into a table with the
  malformed lines removed (both readers stop at the first bad line otherwise).
It also reports the deduplication step's cost as history grows: day 1 against day 30.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

# 2: the clean copy keeps each file's compression (1 wrote every file uncompressed).
CLEAN_FORMAT = 2

# Lines the plain readers cannot load into a typed table (not JSON, not an object, or a
# field whose JSON type differs from the rest): removed from their copy of the files.
MALFORMED_FAULTS = (
    "invalid_json",
    "invalid_encoding",
    "empty_line",
    "not_an_object",
    "mistyped_field",
)


def _peak_rss_mib() -> float:
    # VmHWM, not getrusage: ru_maxrss survives exec, so a child would report its parent's.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: unlike wall time, it barely
    moves when other work shares the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def prepare(work: Path, months: list[str], events: int, seed: int) -> Path:
    from sampledata import generate

    data = work / "data"
    stamp = work / "generated.json"
    wanted = {"months": months, "events": events, "seed": seed}
    known = json.loads(stamp.read_text()) if stamp.exists() else {}
    if {k: known.get(k) for k in wanted} != wanted:
        started = time.perf_counter()
        generate(data, months, events, seed)
        known = {**wanted, "generate_seconds": round(time.perf_counter() - started, 1)}
        stamp.write_text(json.dumps(known))
    if known.get("clean_format") != CLEAN_FORMAT:
        shutil.rmtree(work / "clean", ignore_errors=True)
        make_clean_copy(data, work / "clean")
        stamp.write_text(json.dumps({**known, "clean_format": CLEAN_FORMAT}))
    return data


def make_clean_copy(data: Path, clean: Path) -> None:
    """The landing files without the lines no JSON reader can parse — otherwise the same
    files: a gzip file stays gzip (at the generator's level), so the readers pay for
    decompression as ingest does."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.compute as pc

    from rating.ingest import LandingFile, file_lines
    from sampledata import GZIP_LEVEL

    manifest = pl.read_parquet(data / "manifest" / "lines.parquet")
    bad = manifest.filter(pl.col("fault").is_in(MALFORMED_FAULTS))
    landing = data / "landing" / "usage"
    for path in sorted(landing.glob("*/*")):
        name = f"{path.parent.name}/{path.name}"
        text, raw_bytes, _ = file_lines(LandingFile(name, path))
        lines = pc.cast(text, pa.large_binary())
        if raw_bytes is not None:
            lines = pc.coalesce(raw_bytes, lines)
        drop = bad.filter(pl.col("file") == name)["line_no"].to_list()
        keep = pc.invert(pc.is_in(pa.array(range(1, len(lines) + 1)), pa.array(drop, pa.int64())))
        kept = pc.filter(lines, keep)
        out = clean / path.parent.name / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = b"\n".join(kept.to_pylist())
        payload = payload + b"\n" if payload else b""
        if path.name.endswith(".gz"):
            payload = gzip.compress(payload, compresslevel=GZIP_LEVEL, mtime=0)
        out.write_bytes(payload)


def run_meterclose(data: Path, out: Path) -> dict[str, object]:
    from assets.ingest import ingest_days
    from rating.ingest import IngestRules
    from resources.control_db import ControlDb
    from resources.landing import Landing
    from resources.reference import ReferenceData
    from resources.warehouse import Warehouse

    landing = Landing(data / "landing" / "usage")
    warehouse = Warehouse(out / "warehouse")
    db = ControlDb(f"sqlite:///{out / 'control.db'}")
    db.migrate()
    reference = ReferenceData(data / "reference").snapshot()
    days = []
    cpu = _cpu_seconds()
    started = time.perf_counter()
    for result in ingest_days(
        landing.days(),
        landing=landing,
        warehouse=warehouse,
        reference=reference,
        control_db=db,
        rules=IngestRules(),
        run_id="benchmark",
    ):
        days.append(
            {
                "day": result.day.isoformat(),
                "lines": result.raw_lines,
                "seconds": round(result.seconds, 3),
                **{k: round(v, 3) for k, v in result.timings.items()},
            }
        )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - cpu,
        "lines": sum(int(d["lines"]) for d in days),  # type: ignore[call-overload]
        "days": days,
        "peak_rss_mib": _peak_rss_mib(),
    }


def run_duckdb(clean: Path) -> dict[str, object]:
    import duckdb

    con = duckdb.connect()
    cpu = _cpu_seconds()
    started = time.perf_counter()
    con.execute(
        "CREATE TABLE events AS SELECT * FROM read_json(?, format = 'newline_delimited', "
        "union_by_name = true)",
        [str(clean / "*" / "*.ndjson*")],
    )
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    lines = con.sql("SELECT count(*) FROM events").fetchall()[0][0]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "lines": lines,
        "peak_rss_mib": _peak_rss_mib(),
    }


def run_polars(clean: Path) -> dict[str, object]:
    import polars as pl

    files = sorted(str(p) for p in clean.glob("*/*.ndjson*"))
    cpu = _cpu_seconds()
    started = time.perf_counter()
    frame = pl.scan_ndjson(files, infer_schema_length=None).collect()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - cpu,
        "lines": frame.height,
        "peak_rss_mib": _peak_rss_mib(),
    }


def _child(kind: str, work: Path) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and read back its JSON."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.ingest", "--child", kind, "--work", str(work)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        cwd=Path(__file__).resolve().parent.parent,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000, help="base events per month")
    parser.add_argument("--month", action="append", help="YYYY-MM (default 2026-09)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--work", type=Path, default=Path(".bench/ingest"))
    parser.add_argument(
        "--child", choices=["meterclose", "duckdb", "polars"], help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    work: Path = args.work.resolve()
    if args.child:
        if args.child == "meterclose":
            out = work / "run"
            if out.exists():
                import shutil

                shutil.rmtree(out)
            result = run_meterclose(work / "data", out)
        elif args.child == "duckdb":
            result = run_duckdb(work / "clean")
        else:
            result = run_polars(work / "clean")
        print(json.dumps(result))
        return 0

    months = args.month or ["2026-09"]
    work.mkdir(parents=True, exist_ok=True)
    print(f"preparing {args.events:,} events a month for {', '.join(months)} in {work}", flush=True)
    prepare(work, months, args.events, args.seed)
    results = {}
    # The machine's load around each measurement: the figures are only comparable when
    # nothing else was competing for the cores.
    load: dict[str, list[float]] = {}
    for kind in ("duckdb", "polars", "meterclose"):
        print(f"measuring {kind} …", flush=True)
        before = os.getloadavg()[0]
        results[kind] = _child(kind, work)
        load[kind] = [round(before, 2), round(os.getloadavg()[0], 2)]
        results[kind]["load_average"] = load[kind]
    reference = results["duckdb"]
    ours = results["meterclose"]
    print(
        f"\n{'reader':<22}{'lines':>14}{'seconds':>10}{'CPU s':>8}{'lines/s':>14}"
        f"{'peak RSS MiB':>14}{'load before/after':>19}"
    )
    for kind, r in results.items():
        rate = float(r["lines"]) / float(r["seconds"])
        print(
            f"{kind:<22}{int(r['lines']):>14,}{float(r['seconds']):>10.1f}"
            f"{float(r['cpu_seconds']):>8.1f}"
            f"{rate:>14,.0f}{float(r['peak_rss_mib']):>14,.0f}"
            f"{load[kind][0]:>12.2f} / {load[kind][1]:.2f}"
        )
    ratio = (float(ours["lines"]) / float(ours["seconds"])) / (
        float(reference["lines"]) / float(reference["seconds"])
    )
    print(f"\nmeterclose throughput / clean DuckDB read_json: {ratio:.2f} (target ≥ 0.5)")
    days = ours["days"]
    assert isinstance(days, list)
    in_month = [d for d in days if date.fromisoformat(d["day"]).strftime("%Y-%m") == months[0]]
    if len(in_month) >= 30:
        for label, d in (("day 1", in_month[0]), ("day 30", in_month[29])):
            print(
                f"dedup {label} ({d['day']}): {d['deduplicate']:.3f}s of {d['seconds']:.2f}s "
                f"for {d['lines']:,} lines"
            )
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nfull figures: {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
