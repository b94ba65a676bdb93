"""The gates every close step passes, in one place.

- Its month must be open. A step asked to rewrite a locked month is refused: it says why
  in one line (a run tag the run list shows), ends skipped, and no partition or check
  changes status.
- Its data is committed only after its blocking checks pass (write, check, then commit):
  a step whose checks fail leaves the previous version of its tables in place and fails, so
  its partition never shows materialized on data that did not pass, and nothing downstream
  runs on it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
import pyarrow as pa

from checks.outcome import CheckOutcome
from lifecycle import rules
from resources.control_db import ControlDbResource
from resources.warehouse import Warehouse

# Why a run did nothing, shown in the run list.
REFUSED_TAG = "meterclose/refused"
# Where a step's tables that failed their checks are kept: <warehouse>/_rejected/<table>/.
REJECTED = "_rejected"


def refuse(context: dg.AssetExecutionContext | dg.OpExecutionContext, reason: str) -> None:
    """Say in one line why a run did nothing: in its log, and as a run tag in the run list."""
    context.log.warning(reason)
    context.instance.add_run_tags(context.run.run_id, {REFUSED_TAG: reason[:1000]})


@dataclass(frozen=True)
class Month:
    """The month a close step works on: its partition key and first and last days."""

    period: str
    first: date
    last: date


def open_month(
    context: dg.AssetExecutionContext, control_db: ControlDbResource, action: str = "closed"
) -> Month | None:
    """The step's month, or None when it is locked (the run is told why; the caller returns
    without yielding, so its assets end skipped)."""
    window = context.partition_time_window
    period = context.partition_key
    db = control_db.get()
    try:
        lock = db.lock(period)
    finally:
        db.dispose()
    if lock is not None:
        at = f"{lock.locked_at:%Y-%m-%d %H:%M} UTC"
        refuse(context, str(rules.refused_locked(period, lock.locked_by, at, action)))
        return None
    return Month(period, window.start.date(), (window.end - timedelta(days=1)).date())


def check_result(
    check_name: str, asset_key: dg.AssetKey, outcomes: Sequence[tuple[date, CheckOutcome]]
) -> dg.AssetCheckResult:
    """One check result for a run's days: it fails if any day fails, and says which."""
    failed = [(d, o) for d, o in outcomes if not o.passed]
    if failed:
        description = "; ".join(f"{d}: {o.description}" for d, o in failed[:5])
        detail = failed[0][1].metadata
    elif len(outcomes) == 1:
        description, detail = outcomes[0][1].description, outcomes[0][1].metadata
    else:
        description, detail = f"all {len(outcomes)} days pass", {}
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=not failed,
        description=description,
        metadata={
            "days_checked": len(outcomes),
            "days_failed": len(failed),
            **{
                k: dg.MetadataValue.md(v) if isinstance(v, str) and v.startswith("|") else v
                for k, v in detail.items()
            },
        },
    )


def failed_checks(results: Sequence[dg.AssetCheckResult]) -> list[str]:
    return [f"{r.check_name}: {r.description}" for r in results if not r.passed]


def commit_if_checks_pass(
    store: Warehouse,
    tables: Mapping[str, tuple[date | str, pa.Table]],
    results: Sequence[dg.AssetCheckResult],
    *,
    reports: Mapping[str, tuple[date | str, pa.Table]] | None = None,
) -> Iterator[dg.AssetCheckResult]:
    """Report the checks, then write ``tables`` only if every one passed.

    ``reports`` are tables that explain a failure (a reconciliation, its exception queue):
    they are written either way, so a controller can read why, but the step still fails and
    nothing downstream (exports, publication) runs on the month.
    """
    yield from results
    failed = failed_checks(results)
    if reports:
        store.write(reports)
    if failed:
        # Kept aside for whoever investigates, where no reader of the table looks.
        rejected = store.write({f"{REJECTED}/{name}": part for name, part in tables.items()})
        kept = ", ".join(sorted(tables)) or "nothing"
        aside = f"; what failed is kept in {', '.join(map(str, rejected.values()))}"
        raise dg.Failure(
            description=(
                f"{len(failed)} blocking check(s) failed; {kept} not written (the previous "
                f"version stays): " + "; ".join(failed) + (aside if rejected else "")
            ),
            allow_retries=False,
        )
    if tables:
        store.write(tables)
