"""Deterministic generator of meterclose's sample data: reference data and CloudEvents telemetry.

``generate(out_dir, months, events_per_month, seed)`` writes, under ``out_dir``::

    reference/meters.yaml      the meters (OpenMeter style): slug, event_type, aggregation, ...
    reference/entities.csv     legal entities with functional currency and ERP subsidiary
    reference/customers.csv    ~200 customers; heavy-tailed sizes, some billed cross-currency
    reference/products.csv     products with product family and business unit
    reference/plans.yaml       price plans in USD, EUR, GBP, JPY using every pricing model
    reference/contracts.yaml   contracts with amendments, prepaid credit, commitments, add-ons
    reference/credits.csv      SLA credits
    reference/accounts.yaml    accounts per entity and role, revenue by product family
    reference/fx_rates.csv     daily rates (customer currency -> functional currency)
    landing/usage/YYYY-MM-DD/events-NN.ndjson[.gz]   CloudEvents 1.0, one JSON object a line
    manifest/lines.parquet     the expected ingest outcome of every landing line
    manifest/summary.json      counts per fault, outcome and reason, per month and overall

The manifest predicts, line by line, what the ingest must decide (``outcome``: accepted,
duplicate or quarantined, with a ``reason`` code) and records which fault was injected
(``fault``). Its rules, applied in order, first failing rule wins: invalid_encoding,
empty_line, invalid_json, not_an_object, missing_field, invalid_field, unknown_event_type,
too_late, future_time, invalid_value, negative_value, unknown_customer; among valid lines the
first arrival of a (source, id) pair, by landing day, file name and line number, is accepted
and later copies are duplicates.

Every month gets exactly ``events_per_month`` base events whose event_time falls in the month;
they are all accepted (so the accepted lines of a month equal ``events_per_month``).
Duplicate copies and quarantine faults come on top. ``months[M]`` in the summary counts the
lines generated for month M (base events by their event month, faults by the month they were
injected for); ``landing_months`` counts lines by the month they landed in.

Everything random comes from one ``numpy.random.default_rng(seed)``, consumed in a fixed
order, so the same arguments give byte-identical files: gzip members carry mtime 0 and no
file name, the Parquet manifest is written in a fixed order and the summary with sorted keys.
Lines are built vectorised (numpy -> Arrow -> Polars string expressions), one event day at a
time; events that land on a later day wait in a small buffer until their landing day.

By concern: ``reference`` (meters, entities, customers, products, accounts, FX rates),
``plans``, ``contracts`` (amendments, credits), ``events`` (telemetry), ``faults`` (malformed
lines), ``arrivals`` (lags, late events, duplicates, too-late re-sends), ``landing`` (files)
and ``manifest``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sampledata import arrivals, manifest
from sampledata.contracts import contract_records, draw_contracts, draw_credits
from sampledata.days import TAIL_DAYS, month_bounds
from sampledata.events import Events, Population
from sampledata.faults import Faults
from sampledata.landing import LandingWriter
from sampledata.manifest import ManifestWriter
from sampledata.plans import plans
from sampledata.reference import draw_customers, write_reference


@dataclass
class ReferenceSet:
    """Reference data as drawn, and the per-customer population events are drawn from."""

    plans: list[dict[str, Any]]
    customers: list[dict[str, str]]
    contracts: list[dict[str, Any]]
    credits: list[dict[str, str]]
    population: Population


def build_reference(rng: np.random.Generator, month_days: list[tuple[int, int]]) -> ReferenceSet:
    """Draw customers, contracts, credits and the event population, in this order, from
    ``rng`` (the FX rates are drawn later, when the reference files are written)."""
    price_plans = plans()
    plan_by_id = {p["plan_id"]: p for p in price_plans}
    customers, size_w = draw_customers(rng)
    contracts = draw_contracts(rng, customers, size_w, plan_by_id, month_days)
    credits = draw_credits(rng, contracts, plan_by_id, month_days)
    population = Population(rng, customers, size_w, contracts, plan_by_id, month_days)
    return ReferenceSet(price_plans, customers, contracts, credits, population)


def generate(
    out_dir: Path, months: list[str], events_per_month: int, seed: int, lateness_days: int = 35
) -> dict[str, Any]:
    """Write reference data, landing files and the manifest under `out_dir`; return the summary.

    Deterministic: the same arguments give byte-identical files."""
    out_dir = Path(out_dir)
    months = sorted(set(months))
    if not months:
        raise ValueError("at least one month is required")
    if events_per_month < 0 or lateness_days < 0:
        raise ValueError("events_per_month and lateness_days must be 0 or more")
    month_days = [month_bounds(m) for m in months]
    rng = np.random.default_rng(seed)
    first_day, last_event_day = month_days[0][0], month_days[-1][1]
    last_landing = last_event_day + TAIL_DAYS

    ref = build_reference(rng, month_days)
    ref_counts = write_reference(
        out_dir / "reference",
        rng,
        ref.customers,
        ref.plans,
        contract_records(ref.contracts),
        ref.credits,
        (first_day - 10, last_landing + 10),
    )
    events = Events(ref.population, rng)
    faults = Faults(events, lateness_days)
    plan = arrivals.schedule(rng, months, month_days, events_per_month, lateness_days, last_landing)

    man = ManifestWriter(out_dir / "manifest")
    landing = LandingWriter(out_dir / "landing" / "usage")
    # Lines that land after the day they were drawn on wait here for their landing day.
    pending: dict[int, list[pl.DataFrame]] = defaultdict(list)
    max_lag = min(3, lateness_days)
    try:
        for day in range(first_day, last_landing + 1):
            # 1. base events whose event_time falls on `day`
            if plan.n_day.get(day, 0) > 0:
                arrivals.day_lines(
                    rng, events, day, plan, lateness_days, last_landing, max_lag, pending
                )
            # 2. fault lines landing on `day`
            parts = pending.pop(day, [])
            if plan.fault_plan.get(day):
                parts.append(faults.build(day, plan.fault_plan.pop(day)))
            if not parts:
                continue
            pool = pl.concat(parts, how="vertical").sort("key", maintain_order=True)
            names, sizes = landing.write_day(rng, day, pool)
            man.add(day, pool, names, sizes)
        man.flush()
        landing.finish()
    finally:
        man.close()
        landing.close()
    if pending or plan.fault_plan:
        raise RuntimeError("internal error: lines planned beyond the last landing day")

    summary = manifest.summary(
        months,
        events_per_month,
        seed,
        lateness_days,
        man.counters,
        landing.files,
        ref_counts,
        first_day,
        last_landing,
    )
    man.write_summary(summary)
    return summary
