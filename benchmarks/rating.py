"""Rating benchmark: a month of usage_events through meterclose's rating, beside a bare scan
and a plain pandas implementation of the same job.

    python -m benchmarks.rating --events 10000000 [--events 100000000] [--work .bench/rating]

``--events`` counts usage_events rows (one accepted event × meter it feeds; an LLM completion
or a payment feeds two meters). For each size, a month (2026-09) of usage_events Parquet is
written directly, one file per landing day, in the exact UsageEvents schema, from a reference
set made by ``sampledata``: its customers (heavy-tailed volumes, events only while a contract
is live and for the meters its plan prices), meters, event types and values as the sample
generator draws them — a day at a time, so no size ever sits in memory. Then, each in a
fresh process so that its peak memory (VmHWM) is its own:

- ``meterclose``: the real rating path — reference data loaded, ``terms_in_force``, then
  ``billable_usage`` over the month's files, then ``invoice_lines`` (recurring fees,
  commitments, credits, prepaid drawdown) — on a DuckDB connection with a memory limit and
  a spill directory under the work directory; with seconds per SQL stage;
- ``floor``: a bare DuckDB scan of the usage_events columns rating reads, every column
  forced to be read (count/min/max/length of each): the least any rating can cost;
- ``pandas`` (up to 20 million rows): the same job in plain pandas — the events read with
  ``pandas.read_parquet``, joined to the same segments and charge terms (worked out by
  ``rating.terms`` in DuckDB: small reference data), aggregated per segment × charge ×
  price group with pandas, priced with Python ``Decimal``. Its total ``amount`` per
  currency must equal meterclose's exactly; the benchmark asserts it. It stops at the rated
  lines (the invoice step is per contract, not per event), so meterclose, which also issues
  the invoices, is timed doing more than it.

Targets (issue 3): meterclose within 2x of the floor, at least 10x faster than pandas, peak
RSS under 3 GiB at 100 million rows. pandas is not a dependency of meterclose: install it
into the environment for this benchmark only (``pip install pandas``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

import sampledata
from sampledata.arrivals import NAT_LAG_P
from sampledata.days import month_bounds, to_day
from sampledata.events import MODEL_P, MODELS, REGIONS, SOURCES, TYPE_P, TYPES, uuids

PERIOD = "2026-09"
FIRST = date(2026, 9, 1)
LAST = date(2026, 9, 30)
PANDAS_MAX_ROWS = 20_000_000
DATA_VERSION = 2  # bump when the generated events change, to regenerate cached months

# The usage_events Parquet schema (checks.schemas.UsageEvents), as ingest writes it.
USAGE_EVENTS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("source", pa.string()),
        ("event_key", pa.uint64()),
        ("event_key_hi", pa.uint64()),
        ("customer_id", pa.string()),
        ("event_type", pa.string()),
        ("meter", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("usage_date", pa.date32()),
        ("received_date", pa.date32()),
        ("quantity", pa.decimal128(38, 12)),
        ("unique_value", pa.string()),
        ("dims", pa.string()),
        ("data", pa.string()),
        ("file", pa.string()),
        ("line_no", pa.int64()),
        ("ingest_batch_id", pa.string()),
    ]
)
# Written as the warehouse writes its tables (resources.warehouse).
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "row_group_size": 1_000_000,
}
# The columns rating reads.
RATING_COLUMNS = (
    "customer_id",
    "meter",
    "usage_date",
    "quantity",
    "unique_value",
    "dims",
    "event_time",
    "source",
    "event_id",
)

US_PER_DAY = 86_400_000_000
E12 = 10**12


def _peak_rss_mib() -> float:
    # VmHWM, not getrusage: ru_maxrss survives exec, so a child would report its parent's.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- data


def prepare_reference(work: Path, seed: int) -> Path:
    """A generated reference set (its landing files, 1,000 events, are not used)."""
    data = work / "data"
    stamp = work / "reference.json"
    # The generator's source is part of the key: a reference set written by an older
    # generator may no longer load (a field became required), so it is written again.
    source = hashlib.sha256()
    for path in sorted(Path(sampledata.__file__).parent.glob("*.py")):
        source.update(path.name.encode() + b"\0" + path.read_bytes())
    wanted = {"month": PERIOD, "seed": seed, "generator": source.hexdigest()}
    if not (stamp.exists() and json.loads(stamp.read_text()) == wanted):
        sampledata.generate(data, [PERIOD], 1000, seed)
        stamp.write_text(json.dumps(wanted))
    return data / "reference"


class _Population:
    """Customers, meters and the per-customer parameters events are drawn from."""

    def __init__(self, reference: Path, seed: int) -> None:
        from resources.reference import ReferenceData

        ref = ReferenceData(reference)
        # The reference set prepare_reference wrote, drawn again with its seed: the same
        # customers and contracts, with the per-customer parameters the generator draws.
        drawn = sampledata.build_reference(np.random.default_rng(seed), [month_bounds(PERIOD)])
        self.customer_ids = [c["customer_id"] for c in drawn.customers]
        if self.customer_ids != ref.customers()["customer_id"].to_list():
            raise ValueError(f"{reference}: not the reference set of seed {seed} for {PERIOD}")
        self.draw = drawn.population

        # Meters in string order (so that sorting by code sorts by slug), each with the
        # event type that feeds it, what it measures and its canonical dims per event.
        meters = sorted(ref.meters(), key=lambda m: m.slug)
        self.meter_slugs = [m.slug for m in meters]
        rows = []
        dims_strings: list[str] = []
        for code, m in enumerate(meters):
            if m.event_type not in TYPES:
                continue
            names = sorted(m.group_by)
            # One dims string per (region, model) an event can have.
            first_dims = len(dims_strings)
            for region in REGIONS:
                for model in MODELS:
                    known = {"$.region": region, "$.model": model}
                    dims_strings.append(
                        json.dumps(
                            {k: known.get(m.group_by[k]) for k in names},
                            separators=(",", ":"),
                        )
                    )
            rows.append(
                {
                    "t": TYPES.index(m.event_type),
                    "meter": code,
                    "aggregation": m.aggregation.value,
                    "value": (m.value_property or "").removeprefix("$."),
                    "dims_base": first_dims,
                }
            )
        self.meter_rows = pl.DataFrame(
            rows,
            schema={
                "t": pl.Int8,
                "meter": pl.Int16,
                "aggregation": pl.String,
                "value": pl.String,
                "dims_base": pl.Int32,
            },
        )
        self.dims_strings = dims_strings


def _month_counts(events: int, days: Sequence[date], rng: np.random.Generator) -> np.ndarray:
    weights = np.array([0.75 if d.weekday() >= 5 else 1.0 for d in days])
    return rng.multinomial(events, weights / weights.sum())


def _decimal12(unscaled: np.ndarray, valid: np.ndarray) -> pa.Array:
    """DECIMAL(38,12) values from non-negative int64 multiples of 10^-12, null where not valid."""
    words = np.zeros((len(unscaled), 2), dtype=np.int64)
    words[:, 0] = unscaled
    validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(
        pa.decimal128(38, 12),
        len(unscaled),
        [validity, pa.py_buffer(words.tobytes())],
        null_count=int((~valid).sum()),
    )


def _take(values: Sequence[str], codes: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(codes))


def _cat(*parts: pl.Expr | str) -> pl.Expr:
    return pl.concat_str([pl.lit(p) if isinstance(p, str) else p.cast(pl.String) for p in parts])


def day_events(pop: _Population, day: date, events: int, seed: int) -> pa.Table:
    """One landing day of usage_events: ``events`` accepted events, each × its meters."""
    day_no = (day - FIRST).days
    rng = np.random.default_rng([seed, 1, day_no])
    draw = pop.draw
    weights = draw.weights(to_day(day))
    per_type = rng.multinomial(events, TYPE_P)
    t = np.repeat(np.arange(len(TYPES), dtype=np.int8), per_type)
    cust = np.concatenate(
        [
            rng.choice(len(pop.customer_ids), size=int(k), p=weights[i])
            for i, k in enumerate(per_type)
        ]
    )
    n = len(t)
    late = rng.random(n) < NAT_LAG_P
    lag = np.where(late, rng.choice([1, 2, 3], size=n, p=[0.6, 0.3, 0.1]), 0)
    event_day = to_day(day) - lag
    event_us = event_day.astype(np.int64) * US_PER_DAY + rng.integers(0, US_PER_DAY, n)
    region = draw.home_region[cust].copy()
    flip = rng.random(n) < 0.08
    region[flip] = rng.integers(0, len(REGIONS), int(flip.sum()))
    model = rng.choice(len(MODELS), size=n, p=MODEL_P)
    tokens = np.maximum(1, rng.lognormal(6.0, 1.1, n)).astype(np.int64).clip(None, 10**6)
    user = (draw.n_users[cust] * rng.random(n) ** 2).astype(np.int64) + 1
    gb_milli = (
        (
            draw.base_gb_milli[cust]
            * (1 + draw.gb_growth[cust] * np.maximum(event_day - draw.first_day, 0))
            * (1 + 0.002 * rng.standard_normal(n))
        )
        .astype(np.int64)
        .clip(1, None)
    )
    seats = np.maximum(
        draw.base_seats[cust] + draw.seat_delta[cust] * (event_day >= draw.seat_change_day[cust]),
        1,
    )
    jpy = draw.is_jpy[cust]
    # Clipped so that every quantity's unscaled DECIMAL(38,12) integer fits an int64.
    major = np.exp(draw.pay_mu[cust] + 0.9 * rng.standard_normal(n)).clip(None, 50_000)
    minor = np.where(jpy, major * 150, major * 100).astype(np.int64).clip(50, None)
    # Landing position: the day's lines in a random order over 2-4 files.
    files = int(rng.integers(2, 5))
    position = rng.permutation(n)
    per_file = -(-n // files)
    file_no = position // per_file
    line_no = position % per_file + 1
    ids = uuids(rng, n).to_arrow()
    keys = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64).view(np.uint64)

    frame = pl.DataFrame(
        {
            "event": np.arange(n, dtype=np.int64),
            "t": t,
            "cust": cust.astype(np.int32),
            "region": region.astype(np.int8),
            "model": model.astype(np.int8),
            "event_us": event_us,
            "tokens": tokens,
            "user": user,
            "gb_milli": gb_milli,
            "seats": seats,
            "jpy": jpy,
            "minor": minor,
            "file_no": file_no.astype(np.int16),
            "line_no": line_no.astype(np.int64),
        }
    )
    # The event's data, kept short (rating never reads it).
    amount = (
        pl.when(pl.col("jpy"))
        .then(pl.col("minor").cast(pl.String))
        .otherwise(
            _cat(pl.col("minor") // 100, ".", (pl.col("minor") % 100).cast(pl.String).str.zfill(2))
        )
    )
    user_id = _cat("u-", pl.col("user").cast(pl.String).str.zfill(5))
    data = (
        pl.when(pl.col("t") == 0)
        .then(_cat('{"region":"', pl.col("region_name"), '"}'))
        .when(pl.col("t") == 1)
        .then(_cat('{"model":"', pl.col("model_name"), '","tokens":', pl.col("tokens"), "}"))
        .when(pl.col("t") == 2)
        .then(_cat('{"user_id":"', user_id, '"}'))
        .when(pl.col("t") == 3)
        .then(
            _cat(
                '{"gb":',
                pl.col("gb_milli") // 1000,
                ".",
                (pl.col("gb_milli") % 1000).cast(pl.String).str.zfill(3),
                "}",
            )
        )
        .when(pl.col("t") == 4)
        .then(_cat('{"seats":', pl.col("seats"), "}"))
        .otherwise(_cat('{"amount":"', amount, '"}'))
    )
    value = pl.col("value")
    unscaled = (
        pl.when(pl.col("aggregation") == "COUNT")
        .then(pl.lit(E12, pl.Int64))
        .when(value == "tokens")
        .then(pl.col("tokens") * E12)
        .when(value == "gb")
        .then(pl.col("gb_milli") * 10**9)
        .when(value == "seats")
        .then(pl.col("seats") * E12)
        .when(value == "amount")
        .then(
            pl.when(pl.col("jpy")).then(pl.col("minor") * E12).otherwise(pl.col("minor") * 10**10)
        )
    )
    rows = (
        frame.with_columns(
            pl.Series("region_name", REGIONS).gather(frame["region"].cast(pl.UInt32)),
            pl.Series("model_name", MODELS).gather(frame["model"].cast(pl.UInt32)),
        )
        .with_columns(data.alias("data"))
        .join(pop.meter_rows, on="t", how="inner")
        .select(
            "event",
            "t",
            "cust",
            "meter",
            "event_us",
            "file_no",
            "line_no",
            "data",
            unscaled.alias("unscaled"),
            pl.when(value == "user_id").then(user_id).alias("unique_value"),
            (pl.col("dims_base") + pl.col("region").cast(pl.Int32) * 3 + pl.col("model")).alias(
                "dims"
            ),
        )
        # As ingest orders a day: what rating reads together is stored together.
        .sort("cust", "meter", "event_us", "file_no", "line_no")
    )
    event = rows["event"].to_numpy()
    event_us_rows = rows["event_us"].to_numpy()
    usage_day = event_us_rows // US_PER_DAY
    unscaled_rows = rows["unscaled"].fill_null(0).to_numpy()
    names = [f"{day.isoformat()}/events-{i:02d}.ndjson" for i in range(files)]
    received = np.full(rows.height, to_day(day), dtype=np.int32)
    columns = {
        "event_id": ids.take(pa.array(event)),
        "source": _take(SOURCES, region[event]),
        "event_key": pa.array(keys[event, 0]),
        "event_key_hi": pa.array(keys[event, 1]),
        "customer_id": _take(pop.customer_ids, rows["cust"].to_numpy()),
        "event_type": _take(TYPES, rows["t"].to_numpy()),
        "meter": _take(pop.meter_slugs, rows["meter"].to_numpy()),
        "event_time": pa.array(event_us_rows, pa.timestamp("us", tz="UTC")),
        "usage_date": pa.array(usage_day.astype(np.int32), pa.date32()),
        "received_date": pa.array(received, pa.date32()),
        "quantity": _decimal12(unscaled_rows, rows["unscaled"].is_not_null().to_numpy()),
        "unique_value": rows["unique_value"].to_arrow(),
        "dims": _take(pop.dims_strings, rows["dims"].to_numpy()),
        "data": rows["data"].to_arrow(),
        "file": _take(names, rows["file_no"].to_numpy()),
        "line_no": pa.array(rows["line_no"].to_numpy()),
        "ingest_batch_id": _take(
            [f"ib-{day:%Y%m%d}-{seed:06x}{day_no:06x}"], np.zeros(rows.height, dtype=np.int64)
        ),
    }
    return pa.table(
        [columns[f.name].cast(f.type) for f in USAGE_EVENTS_SCHEMA],
        schema=USAGE_EVENTS_SCHEMA,
    )


def prepare_events(work: Path, reference: Path, rows: int, seed: int) -> dict[str, Any]:
    """The month's usage_events files for ``rows`` rows, reused when already written."""
    out = work / "usage_events"
    stamp = work / "usage_events.json"
    wanted = {"rows": rows, "seed": seed, "version": DATA_VERSION}
    if stamp.exists():
        done = json.loads(stamp.read_text())
        if {k: done.get(k) for k in wanted} == wanted:
            return dict(done)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    pop = _Population(reference, seed)
    meters_per_event = {t: int((pop.meter_rows["t"] == i).sum()) for i, t in enumerate(TYPES)}
    mean_meters = float(np.dot(TYPE_P, [meters_per_event[t] for t in TYPES]))
    days = [FIRST + timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
    counts = _month_counts(round(rows / mean_meters), days, np.random.default_rng([seed, 2]))
    started = time.perf_counter()
    written = 0
    size = 0
    for day, events in zip(days, counts, strict=True):
        table = day_events(pop, day, int(events), seed)
        path = out / f"{day.isoformat()}.parquet"
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp, **PARQUET_OPTIONS)
        tmp.rename(path)
        written += table.num_rows
        size += path.stat().st_size
        del table
        print(f"  {day}: {written:,} rows", end="\r", flush=True)
    print()
    done = {
        **wanted,
        "written_rows": written,
        "parquet_bytes": size,
        "generate_seconds": round(time.perf_counter() - started, 1),
    }
    stamp.write_text(json.dumps(done))
    return done


def event_files(work: Path) -> list[Path]:
    return sorted((work / "usage_events").glob("*.parquet"))


def daily_files(work: Path) -> list[Path]:
    return sorted((work / "daily_usage").glob("*.parquet"))


def prepare_daily(work: Path, reference: Path, memory_limit: str) -> dict[str, Any]:
    """daily_usage for each day of events, as the ingest's daily_usage asset writes it.

    Its cost belongs to ingest (the asset runs there, day by day); it is reported beside
    the rating figures, not inside them.
    """
    import pyarrow.parquet as pq

    from rating.ingest import meters_table
    from rating.usage import daily_usage
    from resources.reference import ReferenceData

    stamp = work / "daily_usage.json"
    if stamp.exists() and len(daily_files(work)) == len(event_files(work)):
        return dict(json.loads(stamp.read_text()))
    meters = meters_table(ReferenceData(reference).meters())
    out = work / "daily_usage"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = 0
    for path in event_files(work):
        con = _connect(work, memory_limit)
        table = daily_usage(con, [path], meters)
        con.close()
        pq.write_table(table, out / path.name, compression="zstd")
        rows += table.num_rows
    done = {"rows": rows, "seconds": round(time.perf_counter() - started, 1)}
    stamp.write_text(json.dumps(done))
    return done


# --------------------------------------------------------------------------- meterclose


class _TimedConnection:
    """A DuckDB connection that times each statement rating runs on it, by stage."""

    _LABEL = re.compile(r"CREATE OR REPLACE TEMP (?:TABLE|VIEW|MACRO) (\w+)")

    def __init__(self, con: Any) -> None:
        self._con = con
        self.stages: dict[str, float] = {}

    def _label(self, query: str) -> str:
        match = self._LABEL.search(query)
        if match:
            return match.group(1)
        first = next((line.strip() for line in query.splitlines() if line.strip()), "")
        return {
            "WITH tier_shape AS (": "price_items: problems",
            "WITH priced_items AS (": "price_items: price",
            "WITH priced AS (": "billable_usage: final select",
        }.get(first, first[:40])

    def _add(self, label: str, seconds: float) -> None:
        self.stages[label] = self.stages.get(label, 0.0) + seconds

    def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = self._con.execute(query, *args, **kwargs)
        self._add(self._label(query), time.perf_counter() - started)
        return result

    def sql(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return _TimedRelation(self._con.sql(query, *args, **kwargs), self, self._label(query))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


class _TimedRelation:
    def __init__(self, relation: Any, owner: _TimedConnection, label: str) -> None:
        self._relation = relation
        self._owner = owner
        self._label = label

    def _timed(self, method: str) -> Any:
        started = time.perf_counter()
        result = getattr(self._relation, method)()
        self._owner._add(self._label, time.perf_counter() - started)
        return result

    def to_arrow_table(self) -> Any:
        return self._timed("to_arrow_table")

    def fetchall(self) -> Any:
        return self._timed("fetchall")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._relation, name)


def _connect(work: Path, memory_limit: str) -> Any:
    from rating.ingest import connect

    con = connect(threads=None, memory_limit=memory_limit)
    spill = work / "duckdb_tmp"
    spill.mkdir(parents=True, exist_ok=True)
    con.execute("SET temp_directory = ?", [str(spill)])
    return con


def _totals(lines: Iterable[tuple[str, Decimal]]) -> dict[str, str]:
    totals: dict[str, Decimal] = {}
    for currency, amount in lines:
        totals[currency] = totals.get(currency, Decimal(0)) + amount
    return {c: str(a) for c, a in sorted(totals.items())}


def _write_lines(path: Path, keys: list[str], currencies: list[str], amounts: list[Any]) -> None:
    """Each line's rounded amount, to find where two implementations part if totals differ."""
    pq.write_table(
        pa.table(
            {
                "line": pa.array(keys, pa.string()),
                "currency": pa.array(currencies, pa.string()),
                "amount": pa.array([str(a) for a in amounts], pa.string()),
            }
        ),
        path,
    )


def run_meterclose(data: Path, work: Path, memory_limit: str) -> dict[str, Any]:
    from rating.billing import billable_usage
    from rating.ingest import meters_table
    from rating.invoice import invoice_lines
    from rating.terms import reference_tables, terms_in_force
    from resources.reference import ReferenceData

    # Imports are not timed. pyarrow imports pandas, when it is installed, on its first
    # conversion of Python objects (about 0.25 s): pandas is here for the pandas reference
    # only and never in the pipeline (a dev dependency), so that import is made now too.
    pa.array([0])
    files = event_files(work)
    started = time.perf_counter()
    ref = ReferenceData(data / "reference")
    meters = ref.meters()
    plans = ref.plans()
    contracts = ref.contracts(plans)
    con = _connect(work, memory_limit)
    timed = _TimedConnection(con)
    terms_started = time.perf_counter()
    terms_in_force(con, reference_tables(plans, contracts), FIRST, LAST)
    rating_started = time.perf_counter()
    # As the billable_usage asset does: totals from daily_usage, events for percentage fees.
    table = billable_usage(
        timed,  # type: ignore[arg-type]
        files,
        meters_table(meters),
        PERIOD,
        FIRST,
        LAST,
        daily_usage_files=daily_files(work),
    )
    # Then the month's invoices, as the invoice_lines asset issues them: recurring fees,
    # commitments, credits and prepaid drawdown on top of the rated lines.
    invoicing_started = time.perf_counter()
    customers = ref.customers().select("customer_id", "entity_id", "currency").to_arrow()
    lines, _ = invoice_lines(
        con, table, customers, ref.credits(contracts, plans), None, PERIOD, FIRST, LAST
    )
    invoicing = time.perf_counter() - invoicing_started
    seconds = time.perf_counter() - started
    con.close()
    keys = [
        f"{c}|{ch}|minimum" if k == "minimum_true_up" else f"{c}|{s}|{ch}|{pg}"
        for c, s, ch, pg, k in zip(
            table["contract_id"].to_pylist(),
            table["segment_start"].to_pylist(),
            table["charge_id"].to_pylist(),
            table["price_group"].to_pylist(),
            table["kind"].to_pylist(),
            strict=True,
        )
    ]
    currencies = table["currency"].to_pylist()
    amounts = table["amount"].to_pylist()
    _write_lines(work / "meterclose_lines.parquet", keys, currencies, amounts)
    stages = {k: round(v, 3) for k, v in timed.stages.items()}
    stages["reference + terms_in_force"] = round(rating_started - started, 3)
    stages["terms_in_force"] = round(rating_started - terms_started, 3)
    stages["invoice_lines"] = round(invoicing, 3)
    return {
        "seconds": seconds,
        "peak_rss_mib": _peak_rss_mib(),
        "lines": table.num_rows,
        "invoice_lines": lines.num_rows,
        "totals": _totals(zip(currencies, amounts, strict=True)),
        "stages": stages,
    }


# --------------------------------------------------------------------------- floor

_FLOOR = """
SELECT count(*), min(customer_id), max(meter), min(usage_date), max(usage_date),
    sum(quantity), count(quantity), count(unique_value), sum(length(unique_value)),
    sum(length(dims)), max(event_time), sum(length(source)), sum(length(event_id))
FROM read_parquet($files)
WHERE usage_date BETWEEN $first AND $last
"""


def run_floor(work: Path, memory_limit: str) -> dict[str, Any]:
    files = [str(p) for p in event_files(work)]
    con = _connect(work, memory_limit)
    started = time.perf_counter()
    row = con.sql(_FLOOR, params={"files": files, "first": FIRST, "last": LAST}).fetchall()[0]
    seconds = time.perf_counter() - started
    con.close()
    return {"seconds": seconds, "peak_rss_mib": _peak_rss_mib(), "rows": row[0]}


# --------------------------------------------------------------------------- pandas

_E12 = Decimal("1e-12")
_E10 = Decimal("1e-10")
_ZERO = Decimal(0)


def _round12(x: Decimal) -> Decimal:
    return x.quantize(_E12, rounding=ROUND_HALF_EVEN)


def _rate(amount: Decimal, rate: Decimal) -> Decimal:
    """amount × rate percent, as rating.pricing: half-even at 10 decimals, then / 100."""
    return (amount * rate).quantize(_E10, rounding=ROUND_HALF_EVEN).scaleb(-2)


def _prorate(x: Decimal, days: int, month_days: int) -> Decimal:
    """x × days / month_days, half-even at 12 decimals, in integers (as rating.billing)."""
    n = int(x.scaleb(12)) * int(days)
    q, r = divmod(n, int(month_days))
    if 2 * r > month_days or (2 * r == month_days and q % 2 == 1):
        q += 1
    return Decimal(q).scaleb(-12)


def _price_tiers(model: str, quantity: Decimal, tiers: list[dict[str, Any]]) -> Decimal:
    total = _ZERO
    lower = _ZERO
    for tier in sorted(tiers, key=lambda t: t["tier_no"]):
        up_to = tier["up_to"]
        unit = tier["unit_amount"] or _ZERO
        flat = tier["flat_amount"] or _ZERO
        rate = tier["rate"] or _ZERO
        reached = tier["tier_no"] == 1 or quantity > lower
        if reached:
            if model == "volume":
                if up_to is None or quantity <= up_to:
                    return _round12(quantity * unit) + flat
            else:
                units = min(quantity, up_to if up_to is not None else quantity) - lower
                product = _rate(units, rate) if model == "graduated_percentage" else units * unit
                total += _round12(product) + flat
        lower = up_to if up_to is not None else lower
    return total


def _price_percentage(item: dict[str, Any], events: Any) -> Decimal:
    """Each paid event's fee (rating.pricing's percentage model), summed; ``events`` are the
    item's, in order (time, then source/event_id, then amount)."""
    if events is None or len(events) == 0:
        return _ZERO
    free_events = int(item["free_events"]) if item["free_events"] is not None else 0
    free_amount = item["free_amount"] if item["free_amount"] is not None else _ZERO
    allowance = free_events > 0 or free_amount > 0
    rate = item["rate"]
    fixed = item["fixed_amount"] or _ZERO
    low, high = item["min_per_event"], item["max_per_event"]
    total = _ZERO
    before = _ZERO
    for event_no, amount in enumerate(events["amount"].tolist(), start=1):
        in_allowance = (
            allowance
            and (free_events == 0 or event_no <= free_events)
            and (free_amount == 0 or before < free_amount)
        )
        if not in_allowance:
            chargeable = amount
        elif free_amount == 0:
            chargeable = _ZERO
        else:
            chargeable = max(before + amount - free_amount, _ZERO)
        before += amount
        if in_allowance and chargeable == 0:
            continue
        fee = _rate(chargeable, rate) + fixed
        fee = max(fee, low) if low is not None else fee
        total += high if high is not None and fee > high else fee
    return total


def _price_item(item: dict[str, Any], tiers: list[dict[str, Any]], events: Any) -> Decimal:
    model = item["model"]
    q = item["billable_quantity"]
    if model == "per_unit":
        return _round12(q * item["unit_amount"])
    if model == "package":
        billable = max(q - (item["free_units"] or _ZERO), _ZERO)
        packages = (billable / item["package_size"]).to_integral_value(rounding=ROUND_CEILING)
        return _round12(packages * item["package_amount"])
    if model == "percentage":
        return _price_percentage(item, events)
    return _price_tiers(model, q, tiers)


def _price_group(dims: str, group_by: str) -> str:
    if not group_by:
        return "{}"
    values = json.loads(dims)
    return json.dumps(
        {g: values.get(g) for g in group_by.split(",")}, separators=(",", ":"), ensure_ascii=False
    )


def run_pandas(data: Path, work: Path) -> dict[str, Any]:
    import pandas as pd

    from rating.currency import round_half_even
    from rating.ingest import connect
    from rating.terms import reference_tables, terms_in_force
    from resources.reference import ReferenceData

    started = time.perf_counter()
    ref = ReferenceData(data / "reference")
    meters = ref.meters()
    plans = ref.plans()
    contracts = ref.contracts(plans)
    # The terms in force are reference data, worked out by rating.terms; the rest is pandas.
    con = connect()
    terms_in_force(con, reference_tables(plans, contracts), FIRST, LAST)
    terms = con.sql("SELECT * FROM charge_terms").to_arrow_table().to_pandas()
    term_tiers = con.sql("SELECT * FROM term_tiers").to_arrow_table().to_pandas()
    con.close()
    aggregation = {m.slug: m.aggregation.value for m in meters}
    month_days = (LAST - FIRST).days + 1

    with localcontext() as ctx:
        ctx.prec = 80
        events = pd.read_parquet(work / "usage_events", columns=list(RATING_COLUMNS))
        events["usage_date"] = pd.to_datetime(events["usage_date"])
        events = events[
            (events["usage_date"] >= pd.Timestamp(FIRST))
            & (events["usage_date"] <= pd.Timestamp(LAST))
        ]
        terms["segment_start"] = pd.to_datetime(terms["segment_start"])
        terms["segment_end"] = pd.to_datetime(terms["segment_end"])
        terms["group_by"] = terms["group_by"].map(lambda g: ",".join(g))
        term_tiers["segment_start"] = pd.to_datetime(term_tiers["segment_start"])
        key = ["contract_id", "segment_start", "charge_id"]

        # Events × the charges they feed, in the charge's segment.
        matched = events.merge(
            terms[[*key, "customer_id", "meter", "segment_end", "group_by", "model"]],
            on=["customer_id", "meter"],
        )
        matched = matched[
            (matched["usage_date"] >= matched["segment_start"])
            & (matched["usage_date"] <= matched["segment_end"])
        ]
        groups = matched[["dims", "group_by"]].drop_duplicates()
        groups["price_group"] = [
            _price_group(d, g) for d, g in zip(groups["dims"], groups["group_by"], strict=True)
        ]
        matched = matched.merge(groups, on=["dims", "group_by"])
        matched["aggregation"] = matched["meter"].map(aggregation)
        by = [*key, "price_group"]
        parts = []
        for kind, part in matched.groupby("aggregation", sort=False):
            grouped = part.groupby(by, sort=False)
            if kind == "SUM":
                quantity = grouped["quantity"].sum()
            elif kind == "COUNT":
                quantity = grouped.size().map(lambda n: Decimal(int(n)))
            elif kind == "MAX":
                quantity = grouped["quantity"].max()
            elif kind == "UNIQUE_COUNT":
                quantity = grouped["unique_value"].nunique().map(lambda n: Decimal(int(n)))
            else:  # LATEST: the quantity of the latest event (time, source, event_id)
                latest = part.sort_values(["event_time", "source", "event_id"])
                quantity = latest.groupby(by, sort=False)["quantity"].nth(-1)
                quantity.index = pd.MultiIndex.from_frame(latest.loc[quantity.index, by])
            usage = pd.DataFrame({"quantity": quantity, "event_count": grouped.size()})
            parts.append(usage.reset_index())
        usage = pd.concat(parts, ignore_index=True)

        items = terms.merge(usage, on=key, how="left")
        items["price_group"] = items["price_group"].fillna("{}")
        items["quantity"] = [_ZERO if pd.isna(q) else q for q in items["quantity"]]
        items["event_count"] = items["event_count"].fillna(0).astype("int64")
        items["included"] = [
            _prorate(x, d, month_days)
            for x, d in zip(items["included_units"], items["segment_days"], strict=True)
        ]
        items["minimum"] = [
            _prorate(x, d, month_days)
            for x, d in zip(items["minimum_amount"], items["segment_days"], strict=True)
        ]
        items["billable_quantity"] = [
            max(_round12(q) - i, _ZERO)
            for q, i in zip(items["quantity"], items["included"], strict=True)
        ]

        # The percentage model prices each of its item's events (segment × price group).
        pct_events = matched[matched["model"] == "percentage"]
        pct_events = pct_events.assign(
            event_order=pct_events["source"] + "/" + pct_events["event_id"],
            amount=pct_events["quantity"],
        ).sort_values([*by, "event_time", "event_order", "amount"])
        events_by_item = dict(iter(pct_events.groupby(by, sort=False)))
        tiers_by_charge = {k: g.to_dict("records") for k, g in term_tiers.groupby(key, sort=False)}

        lines = []
        records = items.to_dict("records")
        for item in records:
            charge = tuple(item[k] for k in key)
            item["amount_precise"] = _price_item(
                item,
                tiers_by_charge.get(charge, []),
                events_by_item.get((*charge, item["price_group"])),
            )
            lines.append(
                (
                    f"{item['contract_id']}|{item['segment_start'].date()}|{item['charge_id']}|"
                    f"{item['price_group']}",
                    item["currency"],
                    round_half_even(item["amount_precise"], item["currency"]),
                )
            )
        # A charge's minimum is monthly: its prorated parts over the charge's segments
        # against the month's spend on it; a shortfall is one line, rounded on its own.
        segments: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for item in records:
            segments.setdefault(tuple(item[k] for k in key), []).append(item)
        month: dict[tuple[str, str], list[Decimal]] = {}
        currency_of: dict[tuple[str, str], str] = {}
        for (contract_id, _, charge_id), segment_items in segments.items():
            spent = sum((i["amount_precise"] for i in segment_items), _ZERO)
            totals = month.setdefault((contract_id, charge_id), [_ZERO, _ZERO])
            totals[0] += segment_items[0]["minimum"]
            totals[1] += spent
            currency_of[(contract_id, charge_id)] = segment_items[0]["currency"]
        for (contract_id, charge_id), (minimum, spent) in month.items():
            if spent < minimum:
                currency = currency_of[(contract_id, charge_id)]
                lines.append(
                    (
                        f"{contract_id}|{charge_id}|minimum",
                        currency,
                        round_half_even(_round12(minimum - spent), currency),
                    )
                )
        seconds = time.perf_counter() - started
    keys, currencies, amounts = (list(x) for x in zip(*lines, strict=True))
    _write_lines(work / "pandas_lines.parquet", keys, currencies, amounts)
    return {
        "seconds": seconds,
        "peak_rss_mib": _peak_rss_mib(),
        "lines": len(lines),
        "totals": _totals(zip(currencies, amounts, strict=True)),
    }


# --------------------------------------------------------------------------- driver


def _child(kind: str, work: Path, rows: int, memory_limit: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and read back its JSON."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.rating",
            "--child",
            kind,
            "--events",
            str(rows),
            "--work",
            str(work),
            "--memory-limit",
            memory_limit,
        ],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        cwd=Path(__file__).resolve().parent.parent,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _pandas_available() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


def _differences(work: Path, limit: int = 10) -> list[str]:
    ours = pl.read_parquet(work / "meterclose_lines.parquet")
    theirs = pl.read_parquet(work / "pandas_lines.parquet")
    joined = ours.join(theirs, on="line", how="full", suffix="_pandas", coalesce=True).filter(
        pl.col("amount")
        .cast(pl.Decimal(38, 12), strict=False)
        .ne_missing(pl.col("amount_pandas").cast(pl.Decimal(38, 12), strict=False))
    )
    return [
        f"{r['line']}: meterclose {r['amount']} pandas {r['amount_pandas']}"
        for r in joined.sort("line").head(limit).iter_rows(named=True)
    ]


def measure(
    work: Path, data: Path, rows: int, seed: int, memory_limit: str, with_pandas: bool
) -> dict[str, Any]:
    size_work = work / str(rows)
    size_work.mkdir(parents=True, exist_ok=True)
    print(f"writing usage_events for {rows:,} rows in {size_work} …", flush=True)
    written = prepare_events(size_work, data / "reference", rows, seed)
    result: dict[str, Any] = {"rows": written["written_rows"], "data": written}
    print("building daily_usage (the ingest's daily asset) …", flush=True)
    result["daily_usage"] = prepare_daily(size_work, data / "reference", memory_limit)
    kinds = ["floor", "meterclose"]
    if rows > PANDAS_MAX_ROWS:
        result["pandas"] = {"skipped": f"more than {PANDAS_MAX_ROWS:,} rows"}
    elif not with_pandas:
        result["pandas"] = {"skipped": "pandas is not installed"}
    else:
        kinds.append("pandas")
    for kind in kinds:
        print(f"measuring {kind} …", flush=True)
        result[kind] = _child(kind, work, rows, memory_limit)
    if "seconds" in result["pandas"]:
        ours, theirs = result["meterclose"]["totals"], result["pandas"]["totals"]
        same = {c: Decimal(a) for c, a in ours.items()} == {
            c: Decimal(a) for c, a in theirs.items()
        }
        result["totals_match"] = same
        if not same:
            print(f"TOTALS DIFFER\n  meterclose {ours}\n  pandas     {theirs}")
            for line in _differences(size_work):
                print(f"  {line}")
    return result


def report(results: dict[str, dict[str, Any]], memory_limit: str) -> None:
    print(
        f"\n{'rows':>13}  {'measure':<11}{'seconds':>9}{'peak RSS MiB':>14}"
        f"{'vs floor':>10}{'pandas/mc':>11}"
    )
    for r in results.values():
        floor = r["floor"]["seconds"]
        ours = r["meterclose"]["seconds"]
        for kind in ("floor", "meterclose", "pandas"):
            m = r[kind]
            if "seconds" not in m:
                print(f"{r['rows']:>13,}  {kind:<11}{'—':>9}  ({m['skipped']})")
                continue
            ratio = f"{m['seconds'] / floor:>10.2f}"
            speedup = f"{m['seconds'] / ours:>11.1f}" if kind == "pandas" else ""
            print(
                f"{r['rows']:>13,}  {kind:<11}{m['seconds']:>9.1f}{m['peak_rss_mib']:>14,.0f}"
                f"{ratio}{speedup}"
            )
    print(f"\nDuckDB memory_limit {memory_limit}. Targets: meterclose ≤ 2.0x the floor, ")
    print("pandas ≥ 10x meterclose's time, peak RSS < 3,072 MiB at 100 million rows.")
    for r in results.values():
        stages = sorted(r["meterclose"]["stages"].items(), key=lambda kv: -kv[1])
        top = ", ".join(f"{k} {v:.1f}s" for k, v in stages[:5])
        print(f"{r['rows']:>13,} meterclose stages: {top}")
        daily = r.get("daily_usage", {})
        if daily:
            print(
                f"{'':>13} rated from daily_usage: {daily['rows']:,} rows, built by the "
                f"ingest's daily asset in {daily['seconds']:.1f}s (not in the rating time)"
            )
        if "totals_match" in r:
            verdict = "match" if r["totals_match"] else "DIFFER"
            print(f"{'':>13} pandas totals {verdict}: {r['meterclose']['totals']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--events",
        type=int,
        action="append",
        help="usage_events rows in the month (repeatable; default 10,000,000)",
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--work", type=Path, default=Path(".bench/rating"))
    parser.add_argument("--memory-limit", default="2GB", help="DuckDB memory_limit")
    parser.add_argument(
        "--child", choices=["meterclose", "floor", "pandas"], help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    work: Path = args.work.resolve()
    sizes: list[int] = args.events or [10_000_000]
    if args.child:
        size_work = work / str(sizes[0])
        if args.child == "meterclose":
            result = run_meterclose(work / "data", size_work, args.memory_limit)
        elif args.child == "floor":
            result = run_floor(size_work, args.memory_limit)
        else:
            result = run_pandas(work / "data", size_work)
        print(json.dumps(result))
        return 0

    with_pandas = _pandas_available()
    if not with_pandas and min(sizes) <= PANDAS_MAX_ROWS:
        print(
            "pandas is not installed: the pandas comparison is skipped. It is not a "
            "dependency of meterclose; for this benchmark, `pip install pandas` into the "
            "environment.",
            flush=True,
        )
    work.mkdir(parents=True, exist_ok=True)
    data = prepare_reference(work, args.seed).parent
    # results.json keeps the sizes measured before (by size); this run's replace theirs.
    path = work / "results.json"
    saved: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
    results: dict[str, dict[str, Any]] = {}
    for rows in sizes:
        results[str(rows)] = measure(work, data, rows, args.seed, args.memory_limit, with_pandas)
        saved[str(rows)] = {**results[str(rows)], "memory_limit": args.memory_limit}
        saved = dict(sorted(saved.items(), key=lambda kv: int(kv[0])))
        path.write_text(json.dumps(saved, indent=2))
    report(results, args.memory_limit)
    print(f"\nfull figures: {work / 'results.json'}")
    mismatched = [r for r in results.values() if r.get("totals_match") is False]
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
