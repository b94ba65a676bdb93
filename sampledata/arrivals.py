"""When lines arrive: base events per day, the natural lag of a few, and the copies that
test the ingest's bookkeeping — late events (landing after their month, within the lateness
limit), duplicates the same day or a later one, and too-late re-sends beyond the limit.

``schedule`` draws, month by month, how many of each land on which day; ``day_lines`` then
builds a day's base events with their copies, filed by landing day.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import polars as pl

from sampledata.days import MS_PER_DAY, TAIL_DAYS, to_date
from sampledata.events import TYPE_P, Events, line_frame
from sampledata.faults import LINE_FAULTS

NAT_LAG_P = 0.04  # share of base events landing 1-3 days after their event day
DUP_RATE = 0.01
LATE_RATE = 0.002
FAULT_RATE = 0.0005


@dataclass
class Schedule:
    """Per event day (days since epoch): base events, late landings, duplicate and
    too-late counts; per landing day, the malformed lines to inject as (fault, month)."""

    n_day: dict[int, int] = field(default_factory=dict)
    day_month: dict[int, str] = field(default_factory=dict)
    late_plan: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    dup_same: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    dup_later: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    tl_plan: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    fault_plan: dict[int, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))


def schedule(
    rng: np.random.Generator,
    months: list[str],
    month_days: list[tuple[int, int]],
    events_per_month: int,
    lateness_days: int,
    last_landing: int,
) -> Schedule:
    """Each month's base events spread over its days (weekends quieter), then its late
    events, duplicates, too-late re-sends and malformed lines (~FAULT_RATE each)."""
    s = Schedule()
    n = int(events_per_month)
    for month, (lo, hi) in zip(months, month_days, strict=True):
        days = np.arange(lo, hi + 1)
        wd = np.array([0.75 if to_date(int(d)).weekday() >= 5 else 1.0 for d in days])
        counts = rng.multinomial(n, wd / wd.sum())
        for d, c in zip(days, counts, strict=True):
            s.n_day[int(d)] = int(c)
            s.day_month[int(d)] = month
        share = counts / max(n, 1)
        max_k = min(TAIL_DAYS, lateness_days)
        n_late = min(n, max(round(LATE_RATE * n), max_k)) if max_k > 0 else 0
        for i in range(n_late):
            k = 1 + i % max_k
            land = hi + k
            e = int(rng.integers(max(lo, land - lateness_days), hi + 1))
            s.late_plan[e].append(land)
        n_dup = max(2, round(DUP_RATE * n)) if n >= 2 else 0
        if n_dup:
            for d, c in zip(days, rng.multinomial(n_dup // 2, share), strict=True):
                s.dup_same[int(d)] += int(c)
            for d, c in zip(days, rng.multinomial(n_dup - n_dup // 2, share), strict=True):
                s.dup_later[int(d)] += int(c)
        n_fault = max(1, round(FAULT_RATE * n))
        eligible = days[(days + lateness_days + 1 <= last_landing) & (counts > 0)]
        if len(eligible):
            w = np.array([s.n_day[int(d)] for d in eligible], dtype=float)
            for d in rng.choice(eligible, size=n_fault, p=w / w.sum()):
                s.tl_plan[int(d)] += 1
        else:
            for d in rng.choice(days, size=n_fault):
                s.fault_plan[int(d)].append(("too_late", month))
        for f in LINE_FAULTS:
            for d in rng.choice(days, size=n_fault):
                s.fault_plan[int(d)].append((f, month))
    return s


def day_lines(
    rng: np.random.Generator,
    events: Events,
    day: int,
    plan: Schedule,
    lateness: int,
    last_landing: int,
    max_lag: int,
    pending: dict[int, list[pl.DataFrame]],
) -> None:
    """Generate a day's base events, their duplicates and too-late re-sends, by landing day;
    too-late re-sends with no event left to copy become malformed-line faults of the day."""
    n, month = plan.n_day[day], plan.day_month[day]
    late_lands = plan.late_plan.get(day, [])
    n_same, n_later, n_tl = plan.dup_same[day], plan.dup_later[day], plan.tl_plan[day]
    fault_plan = plan.fault_plan
    df = events.batch(day, rng.multinomial(n, TYPE_P))
    ms = df["ms"].to_numpy()
    lag = np.zeros(n, dtype=np.int64)
    if max_lag > 0:
        lagged = rng.random(n) < NAT_LAG_P
        lag[lagged] = rng.choice(
            np.array([1, 2, 3]), size=int(lagged.sum()), p=[0.6, 0.3, 0.1]
        ).clip(None, max_lag)
    landing = day + lag
    u = rng.random(n)
    key = np.where(lag == 0, 0.9 * ms / MS_PER_DAY + 0.1 * u, u)
    fault = np.full(n, "none", dtype=object)

    order = rng.permutation(n)
    pos = 0
    nl = min(len(late_lands), n)
    late_idx = order[:nl]
    landing[late_idx] = np.array(late_lands[:nl], dtype=np.int64)
    key[late_idx] = rng.random(nl)
    fault[late_idx] = "late_event"
    pos = nl
    same_idx = order[pos : pos + n_same]
    pos += len(same_idx)
    later_idx = order[pos : pos + n_later]
    pos += len(later_idx)
    tl_idx = order[pos : pos + n_tl]
    if len(tl_idx) < n_tl:  # not enough events to re-send: make direct too-late lines instead
        fault_plan[day].extend([("too_late", month)] * (n_tl - len(tl_idx)))

    base = line_frame(
        df.with_columns(
            pl.Series("key", key),
            pl.lit("accepted").alias("outcome"),
            pl.lit(None, dtype=pl.String).alias("reason"),
            pl.Series("fault", fault.tolist(), dtype=pl.String),
            pl.lit(month).alias("gen_month"),
        )
    ).with_columns(pl.Series("landing", landing))

    copies = []
    # later-day duplicates: 1..20 landing days later, within the lateness limit
    if len(later_idx):
        lmax = np.minimum(
            np.minimum(20, day + lateness - landing[later_idx]), last_landing - landing[later_idx]
        )
        ok = lmax >= 1
        same_idx = np.concatenate([same_idx, later_idx[~ok]])
        li = later_idx[ok]
        d = 1 + (rng.random(len(li)) * lmax[ok]).astype(np.int64)
        copies.append(
            base[li].with_columns(
                pl.Series("key", rng.random(len(li))),
                pl.lit("duplicate").alias("outcome"),
                pl.lit("duplicate_later_day").alias("fault"),
                pl.lit(0, dtype=pl.Int64).alias("meter_count"),
                pl.Series("landing", landing[li] + d),
            )
        )
    if len(same_idx):
        k0 = key[same_idx]
        copies.append(
            base[same_idx].with_columns(
                pl.Series("key", k0 + (1 - k0) * rng.uniform(0.01, 1.0, len(same_idx))),
                pl.lit("duplicate").alias("outcome"),
                pl.lit("duplicate_same_day").alias("fault"),
                pl.lit(0, dtype=pl.Int64).alias("meter_count"),
            )
        )
    if len(tl_idx):
        land = np.minimum(day + lateness + 1 + rng.integers(0, 4, len(tl_idx)), last_landing)
        copies.append(
            base[tl_idx].with_columns(
                pl.Series("key", rng.random(len(tl_idx))),
                pl.lit("quarantined").alias("outcome"),
                pl.lit("too_late").alias("reason"),
                pl.lit("too_late").alias("fault"),
                pl.lit(0, dtype=pl.Int64).alias("meter_count"),
                pl.Series("landing", land),
            )
        )
    allf = pl.concat([base, *copies], how="vertical")
    for (land_day,), part in allf.partition_by(
        "landing", as_dict=True, maintain_order=True
    ).items():
        part = part.drop("landing")
        if land_day != day:
            # Polars string columns may share the whole day's buffers: copy the few rows that
            # wait for a later landing day so they do not keep today's lines alive.
            part = cast(pl.DataFrame, pl.from_arrow(part.to_arrow()))
        pending[int(land_day)].append(part)
