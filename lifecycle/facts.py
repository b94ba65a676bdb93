"""The facts of a month, gathered once from the landing area, the control database and the
warehouse, for the rules in ``lifecycle.rules`` to decide on."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import sqlalchemy as sa

from dagster_project.settings import Settings
from lifecycle import rules
from rating.fx import describe_missing, fx_pairs, missing_quotes
from rating.periods import landing_calendar, landing_cutoff, month_bounds
from resources.approval import approved_entities, journal_digests
from resources.control_db import ControlDb, DayRecord, erp_publication
from resources.landing import Landing

PREPARED = "prepared"
APPROVED = "approved"
PUBLISHED = "published"
LOCKED = "locked"
REPROCESS_REQUESTED = "reprocess_requested"


def calendar_days(
    settings: Settings, db: ControlDb, period: str, stale: set[date] | None = None
) -> tuple[rules.LandingDay, ...]:
    """Every day of the month's landing calendar, with what stands in the way of each."""
    days = landing_calendar(period, settings.landing_cutoff_days)
    landing = Landing(settings.landing_dir)
    records = {r.received_date: r for r in db.days(days[0], days[-1])}
    totals = db.totals_by_day(days[0], days[-1])
    confirmed = db.confirmations(days[0], days[-1])
    if stale is None:
        stale = stale_days(settings, db)
    today = settings.today()
    out = []
    for day in days:
        counts = totals.get(day, {})
        status = _day_status(settings, landing, day, records.get(day), counts, day in stale, today)
        confirmation = confirmed.get(day)
        out.append(
            rules.LandingDay(
                day=day,
                status=status,
                files=len(landing.files(day)) if status != rules.FAILED else 0,
                raw_lines=counts.get("raw_lines", 0),
                quarantined=counts.get("quarantined", 0),
                confirmed_by=confirmation.confirmed_by if confirmation else None,
                confirmed_at=f"{confirmation.confirmed_at:%Y-%m-%d %H:%M} UTC"
                if confirmation
                else None,
                confirmation_reason=confirmation.reason if confirmation else None,
            )
        )
    return tuple(out)


def _day_status(
    settings: Settings,
    landing: Landing,
    day: date,
    record: DayRecord | None,
    counts: dict[str, int],
    stale: bool,
    today: date,
) -> str:
    if day >= today:
        return rules.NOT_YET
    try:
        files = landing.files(day)
    except ValueError:
        # An unexpected file in the folder: the day's ingest fails on it, naming it.
        return rules.FAILED
    if not files:
        return rules.MISSING
    if record is None or record.landing_signature != landing.signature(day):
        return rules.NOT_INGESTED
    if record.status != "done":
        return rules.FAILED
    if stale:
        return rules.STALE
    raw = counts.get("raw_lines", 0)
    if raw and counts.get("quarantined", 0) / raw > settings.quarantine_error_rate:
        return rules.QUARANTINE_HIGH
    return rules.INGESTED


def stale_days(settings: Settings, db: ControlDb) -> set[date]:
    from assets.ingest import stale_landing_days
    from rating.ingest import IngestRules
    from resources.warehouse import Warehouse

    rules_ = IngestRules(lateness_days=settings.lateness_days)
    return set(stale_landing_days(Warehouse(settings.warehouse_dir), db, rules_))


def month_facts(
    settings: Settings, db: ControlDb, period: str, stale: set[date] | None = None
) -> rules.MonthFacts:
    """Everything the rules need to decide about ``period``."""
    lock = db.lock(period)
    prepared = [t for t in db.transitions(period) if t.transition == PREPARED]
    journals = settings.warehouse_dir / "journal_lines" / f"{period}.parquet"
    digests = journal_digests(settings.warehouse_dir, period) if journals.exists() else {}
    approvals = db.approvals(period)
    approved = tuple(sorted(approved_entities(digests, approvals)))
    return rules.MonthFacts(
        period=period,
        today=settings.today(),
        cutoff=landing_cutoff(period, settings.landing_cutoff_days),
        calendar=calendar_days(settings, db, period, stale),
        locked_by=lock.locked_by if lock else None,
        locked_at=f"{lock.locked_at:%Y-%m-%d %H:%M} UTC" if lock else None,
        prepared_by=prepared[-1].actor if prepared and journals.exists() else None,
        open_period=db.open_period(),
        entities=tuple(sorted(digests)),
        approved_entities=approved,
        approvers={e: str(a["approved_by"]) for e, a in approvals.items()},
        unexplained_variances=unexplained_variances(settings, period),
        missing_fx=missing_fx(settings, period),
        erp_configured=settings.erp_kind != "none",
        erp_blockers=erp_blockers(settings, db, period),
        segregation_of_duties=settings.segregation_of_duties,
    )


def missing_fx(settings: Settings, period: str) -> tuple[str, ...]:
    """Every entity × currency pair × day of the month without an FX quote that counts."""
    from resources.reference import ReferenceData

    reference = ReferenceData(settings.reference_dir, settings.reference_url)
    first, last = month_bounds(period)
    missing = missing_quotes(
        reference.fx_rates(),
        fx_pairs(reference.customers(), reference.entities()),
        [first + timedelta(days=n) for n in range((last - first).days + 1)],
        settings.fx_fallback_max_age_days,
    )
    return tuple(describe_missing(missing))


def unexplained_variances(settings: Settings, period: str) -> tuple[str, ...]:
    path = settings.warehouse_dir / "reconciliation" / f"{period}.parquet"
    if not path.exists():
        return ()
    frame = pl.read_parquet(path).filter(pl.col("status") == "unexplained")
    return tuple(frame["control"].unique().sort().to_list())


def erp_blockers(settings: Settings, db: ControlDb, period: str) -> tuple[str, ...]:
    """What stands between the month and its lock on the ERP's side: documents the ERP has
    not confirmed as they stand, or balances that do not tie. Decided from the publish
    ledger, so a shell without the ERP's settings cannot lock a month whose publishing is
    unfinished."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                erp_publication.c.target,
                erp_publication.c.external_id,
                erp_publication.c.state,
                erp_publication.c.payload_sha256,
            ).where(erp_publication.c.period == period)
        ).all()
    if not rows and settings.erp_kind == "none":
        return ()
    publication = settings.warehouse_dir / "erp_publication" / f"{period}.parquet"
    if not rows or not publication.exists():
        return ("it has not been published to the ERP",)
    documents = pl.read_parquet(publication)
    ledger = pl.DataFrame(
        [tuple(r) for r in rows],
        schema=["target", "external_id", "state", "published_sha256"],
        orient="row",
    )
    current = documents.select("target", "external_id", "payload_sha256").join(
        ledger, on=["target", "external_id"], how="left"
    )
    blockers = []
    unconfirmed = current.filter(pl.col("state").fill_null("unpublished") != "confirmed")
    if unconfirmed.height:
        states = dict(
            unconfirmed.group_by(pl.col("state").fill_null("unpublished"))
            .len()
            .sort("state")
            .iter_rows()
        )
        blockers.append(
            f"{unconfirmed.height} of {documents.height} ERP document(s) not confirmed "
            f"({', '.join(f'{n} {s}' for s, n in states.items())})"
        )
    changed = current.filter(pl.col("published_sha256") != pl.col("payload_sha256"))
    if changed.height:
        blockers.append(
            f"{changed.height} ERP document(s) changed after the ERP confirmed them "
            f"({', '.join(changed['external_id'].head(3))}…)"
        )
    controls = settings.warehouse_dir / "erp_reconciliation" / f"{period}.parquet"
    if (
        controls.exists()
        and pl.read_parquet(controls).filter(pl.col("status") == "unexplained").height
    ):
        blockers.append("the ERP's balances differ from journal_lines (erp_reconciliation)")
    return tuple(blockers)
