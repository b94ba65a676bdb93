"""The rules of a month's close: one function per transition, shared by every entry point.

open → complete → prepared → approved → published → locked (→ restated). Each ``may_*``
function takes the facts of one month (``MonthFacts``, gathered by ``lifecycle.facts``)
and answers with a ``Decision``: allowed, or refused with one line a controller
understands and what to do next. The CLI, the Dagster jobs, the schedules and the sensors
call these functions; none of them decides on its own. Nothing here reads files, the
database or the clock: the facts carry the product's clock (``today``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

# A landing day of a month's calendar, as the close sees it.
INGESTED = "ingested"  # ingested, checks passed, window current
MISSING = "missing"  # no files
NOT_INGESTED = "not_ingested"  # files that were never ingested, or changed since
FAILED = "failed"  # ingest failed its checks or was interrupted
STALE = "stale"  # an earlier day was re-ingested: its deduplication must run again
QUARANTINE_HIGH = "quarantine_high"  # ingested, but too many lines were quarantined
NOT_YET = "not_yet"  # the day has not ended on the product's clock

# What a controller's confirmation can stand in for: a day with no files, or one whose
# quarantine rate is above the error threshold. A failed or stale day holds no
# trustworthy data, so confirming it would drop or double-count events: it is re-ingested.
CONFIRMABLE = frozenset({MISSING, QUARANTINE_HIGH})

_WHAT = {
    MISSING: "has no landing files",
    NOT_INGESTED: "has landing files not ingested yet",
    FAILED: "failed its ingest checks",
    STALE: "is stale (an earlier day was re-ingested)",
    QUARANTINE_HIGH: "quarantined too many lines",
    NOT_YET: "has not ended yet",
}


_WHAT_MANY = {
    MISSING: "have no landing files",
    NOT_INGESTED: "have landing files not ingested yet",
    FAILED: "failed their ingest checks",
    STALE: "are stale (an earlier day was re-ingested)",
    QUARANTINE_HIGH: "quarantined too many lines",
    NOT_YET: "have not ended yet",
}


@dataclass(frozen=True)
class Decision:
    """May the month move on? If not, why, and what to do about it, in one line each."""

    allowed: bool
    reason: str
    next_step: str = ""

    def __str__(self) -> str:
        return f"{self.reason}; {self.next_step}" if self.next_step else self.reason


@dataclass(frozen=True)
class LandingDay:
    """One day of a month's landing calendar."""

    day: date
    status: str
    files: int = 0
    raw_lines: int = 0
    quarantined: int = 0
    confirmed_by: str | None = None
    confirmed_at: str | None = None
    confirmation_reason: str | None = None

    @property
    def quarantine_rate(self) -> float:
        return self.quarantined / self.raw_lines if self.raw_lines else 0.0

    @property
    def ready(self) -> bool:
        """Whether the close may use this day as it stands."""
        return self.status == INGESTED or (
            self.status in CONFIRMABLE and self.confirmed_by is not None
        )


@dataclass(frozen=True)
class MonthFacts:
    """What the rules need to know about one month, gathered in one place."""

    period: str
    today: date
    cutoff: date
    calendar: tuple[LandingDay, ...]
    locked_by: str | None = None
    locked_at: str | None = None
    prepared_by: str | None = None
    open_period: str | None = None
    entities: tuple[str, ...] = ()
    approved_entities: tuple[str, ...] = ()
    approvers: dict[str, str] = field(default_factory=dict)
    unexplained_variances: tuple[str, ...] = ()
    # Entity × currency pair × days without an FX quote the close would need.
    missing_fx: tuple[str, ...] = ()
    erp_configured: bool = False
    erp_blockers: tuple[str, ...] = ()
    segregation_of_duties: bool = True

    @property
    def blocking_days(self) -> list[LandingDay]:
        return [d for d in self.calendar if not d.ready]

    @property
    def state(self) -> str:
        """The month's state, from the records of its transitions."""
        if self.locked_by:
            return "locked"
        if self.prepared_by is None:
            return "complete" if may_close_calendar(self).allowed else "open"
        if self.entities and set(self.entities) <= set(self.approved_entities):
            return "published" if self.erp_configured and not self.erp_blockers else "approved"
        return "prepared"


def _refused_locked(facts: MonthFacts, action: str) -> Decision:
    return refused_locked(facts.period, facts.locked_by or "", facts.locked_at or "", action)


def refused_locked(period: str, locked_by: str, locked_at: str, action: str) -> Decision:
    """A locked month is never rewritten: restating it goes through a reprocess request."""
    return Decision(
        False,
        f"{period} is locked (by {locked_by} at {locked_at}): it is never {action} again",
        f"to restate it, run reprocess_job for partition {period} "
        f"(meterclose reprocess --period {period} --reason …); the difference is "
        "booked in the open period",
    )


def describe_days(days: list[LandingDay], limit: int = 6) -> str:
    """``2026-09-15 has no landing files; 2026-11-06 … 2026-12-04 (29 days) have none``:
    runs of consecutive days in the same state are named as one range."""
    runs: list[list[LandingDay]] = []
    for d in days:
        last = runs[-1][-1] if runs else None
        if last and last.status == d.status and (d.day - last.day).days == 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    shown = [
        f"{r[0].day} {_WHAT.get(r[0].status, r[0].status)}"
        if len(r) == 1
        else f"{r[0].day} … {r[-1].day} ({len(r)} days) {_WHAT_MANY.get(r[0].status, r[0].status)}"
        for r in runs[:limit]
    ]
    more = f" and {len(runs) - limit} more" if len(runs) > limit else ""
    return "; ".join(shown) + more


def may_close_calendar(facts: MonthFacts) -> Decision:
    """Is every landing day of the month's calendar in (or confirmed by a controller)?"""
    if facts.today <= facts.cutoff:
        return Decision(
            False,
            f"{facts.period} cannot close yet: its landing calendar runs through "
            f"{facts.cutoff} and today is {facts.today}",
            "wait for the month-end close, or set METERCLOSE_LANDING_CUTOFF_DAYS",
        )
    blocking = facts.blocking_days
    if not blocking:
        return Decision(True, f"{facts.period}: every landing day through {facts.cutoff} is in")
    steps = []
    if any(d.status in (MISSING, QUARANTINE_HIGH) for d in blocking):
        first = next(d for d in blocking if d.status in CONFIRMABLE)
        steps.append(
            "land the missing files, or confirm a day complete as it stands with "
            f"meterclose confirm-day --day {first.day} --reason … --by … (or confirm_day_job)"
        )
    if any(d.status in (NOT_INGESTED, FAILED, STALE) for d in blocking):
        first = next(d for d in blocking if d.status in (NOT_INGESTED, FAILED, STALE))
        steps.append(
            f"ingest the days again (meterclose ingest --from {first.day}, or ingest_job "
            "for those partitions)"
        )
    return Decision(
        False,
        f"{facts.period} cannot close: landing day {describe_days(blocking)}",
        "; ".join(steps),
    )


def may_close(facts: MonthFacts) -> Decision:
    """May the month be (re)computed — rated, invoiced, booked, reconciled?"""
    if facts.locked_by:
        return _refused_locked(facts, "closed")
    calendar = may_close_calendar(facts)
    if not calendar.allowed or not facts.missing_fx:
        return calendar
    return Decision(
        False,
        f"{facts.period} cannot close: no FX rate for {'; '.join(facts.missing_fx)}",
        "add the rates to fx_rates.csv (a feed that skips weekends: allow an older quote "
        "with METERCLOSE_FX_FALLBACK_MAX_AGE_DAYS)",
    )


def may_approve(facts: MonthFacts, approved_by: str) -> Decision:
    """May ``approved_by`` approve the month's journals?"""
    if not approved_by.strip():
        return Decision(False, "an approval needs the approver's name", "give approved_by")
    if facts.locked_by:
        return _refused_locked(facts, "approved")
    if facts.prepared_by is None:
        return Decision(
            False,
            f"{facts.period} has not been closed, so there is nothing to approve",
            f"close it first (meterclose close --period {facts.period}, or close_job)",
        )
    if facts.segregation_of_duties and approved_by == facts.prepared_by:
        return Decision(
            False,
            f"{approved_by} prepared the close of {facts.period} and cannot also approve it "
            "(segregation of duties)",
            "ask another person to approve, or set METERCLOSE_SEGREGATION_OF_DUTIES=off for "
            "a one-person team",
        )
    return Decision(True, f"{facts.period} may be approved by {approved_by}")


def may_publish(facts: MonthFacts) -> Decision:
    """May the month's approved journals be sent to the ERP?"""
    if facts.locked_by:
        return _refused_locked(facts, "published")
    if facts.prepared_by is None:
        return Decision(
            False,
            f"{facts.period} has not been closed, so there is nothing to publish",
            f"close it first (meterclose close --period {facts.period})",
        )
    if facts.unexplained_variances:
        return Decision(
            False,
            f"{facts.period} is not published: {len(facts.unexplained_variances)} control(s) "
            f"with an unexplained variance ({', '.join(facts.unexplained_variances)})",
            "explain or fix them, close the month again, and have it approved",
        )
    if not facts.approved_entities:
        return Decision(
            False,
            f"{facts.period} is not published: no entity's journals are approved as they stand",
            f"approve them first (meterclose approve --period {facts.period} --by …)",
        )
    return Decision(True, f"{facts.period} may be published")


def may_lock(facts: MonthFacts) -> Decision:
    """May the month be locked for good?"""
    if facts.locked_by:
        return Decision(
            False,
            f"{facts.period} is already locked (by {facts.locked_by} at {facts.locked_at})",
            "",
        )
    if facts.prepared_by is None:
        return Decision(
            False,
            f"{facts.period} cannot be locked: it has not been closed",
            f"close it first (meterclose close --period {facts.period})",
        )
    if facts.open_period is not None and facts.period != facts.open_period:
        return Decision(
            False,
            f"{facts.period} cannot be locked: the open period is {facts.open_period} "
            "(months are locked in order)",
            f"lock {facts.open_period} first",
        )
    if facts.unexplained_variances:
        return Decision(
            False,
            f"{facts.period} cannot be locked: {len(facts.unexplained_variances)} unexplained "
            f"variance(s) in its reconciliation ({', '.join(facts.unexplained_variances)})",
            "explain or fix them and close the month again",
        )
    unapproved = [e for e in facts.entities if e not in facts.approved_entities]
    if unapproved:
        return Decision(
            False,
            f"{facts.period} cannot be locked: journals of {', '.join(unapproved)} are not "
            "approved as they stand",
            f"approve them (meterclose approve --period {facts.period} --by …)",
        )
    if facts.erp_blockers:
        return Decision(
            False,
            f"{facts.period} cannot be locked: {facts.erp_blockers[0]}",
            f"see erp_exceptions, then meterclose publish --period {facts.period}",
        )
    return Decision(True, f"{facts.period} may be locked")
