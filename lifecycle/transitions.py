"""Moving a month from one state to the next: ask the rule, act, record who, when and from
which run. The Dagster jobs call these; the CLI launches the jobs."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date

from dagster_project.settings import Settings
from lifecycle import facts as month
from lifecycle import rules
from rating.periods import landing_calendar, parse_period, period_of, previous_period
from resources.approval import approve_journals, journal_digests
from resources.control_db import ControlDb, PeriodLock


class Refused(RuntimeError):
    """A transition the rules do not allow: not a failure, and nothing was changed."""

    def __init__(self, decision: rules.Decision) -> None:
        super().__init__(str(decision))
        self.decision = decision


def require(decision: rules.Decision) -> None:
    if not decision.allowed:
        raise Refused(decision)


def check_period(period: str) -> str:
    try:
        return parse_period(period)
    except ValueError as exc:
        raise Refused(rules.Decision(False, str(exc), "give the month as YYYY-MM")) from None


def confirm_day(
    settings: Settings, db: ControlDb, day: date, reason: str, by: str, run_id: str | None
) -> rules.LandingDay:
    """A controller confirms a landing day complete as it stands (no files, or a quarantine
    rate above the error threshold)."""
    if not reason.strip() or not by.strip():
        raise Refused(rules.Decision(False, "a confirmation needs a reason and a name", ""))
    period = period_of(day)
    # A day belongs to its own month's calendar, and the first days of a month also to the
    # previous month's.
    owners = [
        p
        for p in (previous_period(period), period)
        if day in landing_calendar(p, settings.landing_cutoff_days)
    ]
    if db.lock(period) is not None:
        raise Refused(
            rules.Decision(
                False,
                f"landing day {day} belongs to {period}, which is locked",
                "a locked month is never closed again",
            )
        )
    calendar = month.calendar_days(settings, db, owners[-1])
    found = next(d for d in calendar if d.day == day)
    if found.status not in rules.CONFIRMABLE:
        what = {
            rules.INGESTED: "is ingested and complete: nothing to confirm",
            rules.NOT_YET: "has not ended yet",
        }.get(found.status, f"{rules.describe_days([found]).split(' ', 1)[1]}: re-ingest it")
        raise Refused(rules.Decision(False, f"landing day {day} {what}", ""))
    db.confirm_day(day, by, reason, found.status, run_id)
    return found


def record_prepared(
    settings: Settings, db: ControlDb, period: str, prepared_by: str, run_id: str | None
) -> None:
    """The close computed and checked the month: it is prepared, by ``prepared_by``."""
    digests = journal_digests(settings.warehouse_dir, period)
    combined = ",".join(f"{e}={d}" for e, (d, _, _) in sorted(digests.items()))
    db.record_transition(
        period,
        month.PREPARED,
        prepared_by,
        run_id,
        digest=hashlib.sha256(combined.encode()).hexdigest()[:32],
        detail=f"{len(digests)} entities",
    )


def approve(
    settings: Settings,
    db: ControlDb,
    period: str,
    entities: Sequence[str] | None,
    approved_by: str,
    run_id: str | None,
) -> list[str]:
    """Approve the month's journals (some entities, or all), on their content as it stands."""
    check_period(period)
    require(rules.may_approve(month.month_facts(settings, db, period), approved_by))
    try:
        chosen = approve_journals(settings.warehouse_dir, db, period, entities, approved_by)
    except ValueError as exc:
        raise Refused(rules.Decision(False, str(exc), "")) from None
    digests = journal_digests(settings.warehouse_dir, period)
    for entity in chosen:
        db.record_transition(
            period, month.APPROVED, approved_by, run_id, entity_id=entity,
            digest=digests[entity][0],
        )  # fmt: skip
    return chosen


def may_publish(settings: Settings, db: ControlDb, period: str) -> rules.Decision:
    check_period(period)
    return rules.may_publish(month.month_facts(settings, db, period))


def lock(settings: Settings, db: ControlDb, period: str, locked_by: str, run_id: str) -> PeriodLock:
    """Lock the month for good, keeping a snapshot of the reference data it was closed with."""
    from resources.reference import ReferenceData

    check_period(period)
    if not locked_by.strip():
        raise Refused(rules.Decision(False, "a lock needs the controller's name", ""))
    require(rules.may_lock(month.month_facts(settings, db, period)))
    reference = ReferenceData(settings.reference_dir, settings.reference_url)
    digest, snapshot = reference.snapshot_to(settings.warehouse_dir / "_snapshots", period)
    locked = db.record_lock(period, locked_by, run_id, digest, str(snapshot))
    db.record_transition(period, month.LOCKED, locked_by, run_id, digest=digest)
    return locked


def request_reprocess(
    settings: Settings, db: ControlDb, period: str, requested_by: str, reason: str, run_id: str
) -> str:
    """Ask for a locked month to be restated; the open period's close books the delta."""
    check_period(period)
    if not reason.strip() or not requested_by.strip():
        raise Refused(rules.Decision(False, "a reprocess request needs a reason and a name", ""))
    if db.lock(period) is None:
        raise Refused(
            rules.Decision(
                False,
                f"{period} is not locked: there is nothing to restate",
                f"close it again instead (meterclose close --period {period}, or close_job "
                f"for partition {period})",
            )
        )
    booked_in = db.request_reprocess(period, requested_by, reason)
    db.record_transition(period, month.REPROCESS_REQUESTED, requested_by, run_id, detail=reason)
    return booked_in


def closable_periods(
    settings: Settings, db: ControlDb, periods: Sequence[str]
) -> list[tuple[str, rules.Decision]]:
    """Each period with the rule's answer to "may it close now?"."""
    stale = month.stale_days(settings, db)
    return [
        (period, rules.may_close(month.month_facts(settings, db, period, stale)))
        for period in periods
    ]
