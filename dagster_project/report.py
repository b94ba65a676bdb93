"""What the commands print: ingest, close and publication summaries (rich tables)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from dagster_project.settings import Settings

if TYPE_CHECKING:
    from checks.outcome import CheckOutcome


def _say(message: str) -> None:
    print(message, flush=True)


def print_close(settings: Settings, periods: Sequence[str]) -> None:
    """What the close of each month produced, table by table."""
    for show in (_billing, _invoices, _journals, _reconciliation):
        show(settings, periods)


def _billing(settings: Settings, periods: Sequence[str]) -> None:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Rated usage (billable_usage)")
    for column in ("period", "currency", "contracts", "lines", "usage", "minimum true-ups"):
        table.add_column(column, justify="right")
    for period in periods:
        frame = pl.read_parquet(settings.warehouse_dir / "billable_usage" / f"{period}.parquet")
        summary = (
            frame.group_by("currency")
            .agg(
                contracts=pl.col("contract_id").n_unique(),
                lines=pl.len(),
                usage=pl.col("amount").filter(pl.col("kind") == "usage").sum(),
                minimums=pl.col("amount").filter(pl.col("kind") == "minimum_true_up").sum(),
            )
            .sort("currency")
        )
        for row in summary.iter_rows(named=True):
            table.add_row(
                period,
                row["currency"],
                str(row["contracts"]),
                str(row["lines"]),
                f"{row['usage']:,.{_places(row['currency'])}f}",
                f"{row['minimums']:,.{_places(row['currency'])}f}",
            )
    Console().print(table)


def _invoices(settings: Settings, periods: Sequence[str]) -> None:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Invoices and credit memos (invoice_lines)")
    columns = ("period", "currency", "invoices", "credit memos", "usage", "recurring fees")
    for column in (*columns, "true-ups", "credits", "prepaid drawn", "total due"):
        table.add_column(column, justify="right")
    kind = pl.col("kind")
    for period in periods:
        frame = pl.read_parquet(settings.warehouse_dir / "invoice_lines" / f"{period}.parquet")
        summary = (
            frame.group_by("currency")
            .agg(
                invoices=pl.col("invoice_id")
                .filter(pl.col("document_type") == "invoice")
                .n_unique(),
                memos=pl.col("invoice_id")
                .filter(pl.col("document_type") == "credit_memo")
                .n_unique(),
                usage=pl.col("amount").filter(kind == "usage").sum(),
                fees=pl.col("amount").filter(kind.str.starts_with("recurring")).sum(),
                true_ups=pl.col("amount").filter(kind.str.ends_with("true_up")).sum(),
                credits=pl.col("amount").filter(kind == "credit").sum(),
                prepaid=pl.col("amount").filter(kind == "prepaid_drawdown").sum(),
                total=pl.col("amount").sum(),
            )
            .sort("currency")
        )
        for row in summary.iter_rows(named=True):
            places = _places(row["currency"])
            table.add_row(
                period,
                row["currency"],
                str(row["invoices"]),
                str(row["memos"]),
                *(
                    f"{row[k]:,.{places}f}"
                    for k in ("usage", "fees", "true_ups", "credits", "prepaid", "total")
                ),
            )
    # Ten money columns do not fit 80 characters; a narrower terminal wraps lines instead
    # of cutting every figure short.
    Console(width=max(Console().width, 132)).print(table)


def _journals(settings: Settings, periods: Sequence[str]) -> None:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Journals (journal_lines), functional currency")
    for column in ("period", "entity", "currency", "journals", "lines", "debits", "credits"):
        table.add_column(column, justify="right")
    for period in periods:
        frame = pl.read_parquet(settings.warehouse_dir / "journal_lines" / f"{period}.parquet")
        summary = (
            frame.group_by("entity_id", "functional_currency")
            .agg(
                journals=pl.col("journal_id").n_unique(),
                lines=pl.len(),
                debit=pl.col("functional_debit").sum(),
                credit=pl.col("functional_credit").sum(),
            )
            .sort("entity_id")
        )
        for row in summary.iter_rows(named=True):
            places = _places(row["functional_currency"])
            table.add_row(
                period,
                row["entity_id"],
                row["functional_currency"],
                str(row["journals"]),
                str(row["lines"]),
                f"{row['debit']:,.{places}f}",
                f"{row['credit']:,.{places}f}",
            )
    Console().print(table)


def _reconciliation(settings: Settings, periods: Sequence[str]) -> None:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Reconciliation and exceptions")
    columns = ("period", "controls", "tied", "explained", "unexplained", "exceptions")
    for column in (*columns, "of which high"):
        table.add_column(column, justify="right")
    explained: list[str] = []
    for period in periods:
        controls = pl.read_parquet(settings.warehouse_dir / "reconciliation" / f"{period}.parquet")
        queue = pl.read_parquet(settings.warehouse_dir / "exceptions" / f"{period}.parquet")
        status = dict(controls.group_by("status").len().iter_rows())
        table.add_row(
            period,
            str(controls.height),
            *(str(status.get(s, 0)) for s in ("tied", "explained", "unexplained")),
            str(queue.height),
            str(queue.filter(pl.col("severity") == "high").height),
        )
        explained += [
            f"  {period} {r['entity_id']} {r['control']}: {r['explanation']}"
            for r in controls.filter(pl.col("status") != "tied").iter_rows(named=True)
        ]
    Console().print(table)
    if explained:
        _say("variances and why:\n" + "\n".join(explained))


def print_publication(settings: Settings, periods: Sequence[str]) -> None:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Published to the ERP ({settings.erp_kind}: {settings.erp_url})")
    for column in ("period", "entity", "documents", "lines", "confirmed", "other states"):
        table.add_column(column, justify="right")
    notes: list[str] = []
    for period in periods:
        path = settings.warehouse_dir / "erp_publication" / f"{period}.parquet"
        if not path.exists():
            continue
        docs = pl.read_parquet(path)
        summary = (
            docs.group_by("entity_id")
            .agg(
                documents=pl.len(),
                lines=pl.col("line_count").sum(),
                confirmed=(pl.col("state") == "confirmed").sum(),
                other=pl.col("state").filter(pl.col("state") != "confirmed").sort().unique(),
            )
            .sort("entity_id")
        )
        for row in summary.iter_rows(named=True):
            table.add_row(
                period,
                row["entity_id"],
                str(row["documents"]),
                str(row["lines"]),
                str(row["confirmed"]),
                ", ".join(row["other"]) or "-",
            )
        queue = pl.read_parquet(settings.warehouse_dir / "erp_exceptions" / f"{period}.parquet")
        notes += [f"  {period} {r['kind']}: {r['reason']}" for r in queue.iter_rows(named=True)]
        controls = pl.read_parquet(
            settings.warehouse_dir / "erp_reconciliation" / f"{period}.parquet"
        )
        status = dict(controls.group_by("status").len().iter_rows())
        notes.append(
            f"  {period} ERP read-back: {controls.height} balances by entity, account and "
            f"currency — {status.get('tied', 0)} tied, {status.get('explained', 0)} explained, "
            f"{status.get('unexplained', 0)} unexplained"
        )
    Console().print(table)
    if notes:
        _say("\n".join(notes))


def _places(currency: str) -> int:
    from rating.currency import minor_units

    return minor_units(currency)


def print_summary(settings: Settings, days: Sequence[date]) -> None:
    from rich.console import Console
    from rich.table import Table

    from resources.control_db import ControlDb

    db = ControlDb(settings.control_db_url)
    records = {r.received_date: r for r in db.days(min(days), max(days))}
    totals = db.totals_by_day(min(days), max(days))
    db.dispose()
    by_month: dict[str, list[int]] = {}
    for day in days:
        if day not in records:
            continue
        t = totals[day]
        row = by_month.setdefault(f"{day:%Y-%m}", [0, 0, 0, 0, 0])
        row[0] += 1
        for i, key in enumerate(("raw_lines", "accepted", "duplicates", "quarantined"), start=1):
            row[i] += t[key]
    table = Table(title="Ingested landing days")
    for column in ("landing month", "days", "raw lines", "accepted", "duplicates", "quarantined"):
        table.add_column(column, justify="right")
    for month, row in sorted(by_month.items()):
        table.add_row(month, *(f"{v:,}" for v in row))
    grand = [sum(r[i] for r in by_month.values()) for i in range(5)]
    table.add_row("total", *(f"{v:,}" for v in grand), style="bold")
    Console().print(table)
    balanced = grand[1] == grand[2] + grand[3] + grand[4]
    _say(
        f"every line accounted for: {grand[1]:,} = {grand[2]:,} accepted + {grand[3]:,} "
        f"duplicates + {grand[4]:,} quarantined ({'balanced' if balanced else 'NOT BALANCED'})"
    )
    manifest = settings.data_dir / "manifest" / "lines.parquet"
    if manifest.exists():
        outcome = compare_manifest(settings, days)
        _say(f"generator manifest: {outcome.description}")
        if not outcome.passed:
            _say(str(outcome.metadata["first_mismatches"]))


def compare_manifest(settings: Settings, days: Sequence[date]) -> CheckOutcome:
    """The ingest outcome of every line against the generator's ground truth."""
    import polars as pl

    from checks.manifest import actual_outcomes, compare_with_manifest

    first, last = min(days), max(days)

    def scan(table: str) -> pl.LazyFrame:
        return pl.scan_parquet(settings.warehouse_dir / table / "*.parquet").filter(
            pl.col("received_date").is_between(first, last)
        )

    manifest = pl.scan_parquet(settings.data_dir / "manifest" / "lines.parquet").filter(
        pl.col("received_date").is_between(first, last)
    )
    actual = actual_outcomes(
        scan("usage_events"), scan("quarantined_events"), scan("duplicate_events")
    )
    return compare_with_manifest(manifest, actual)


def print_status(settings: Settings, periods: Sequence[str]) -> None:
    """Each month's state, its landing calendar's blockers, and who did each step."""
    from rich.console import Console
    from rich.table import Table

    from lifecycle import facts as month
    from lifecycle import rules
    from resources.control_db import ControlDb

    db = ControlDb(settings.control_db_url)
    db.migrate()
    try:
        stale = month.stale_days(settings, db)
        rows = [(month.month_facts(settings, db, p, stale), db.transitions(p)) for p in periods]
        open_period = db.open_period()
    finally:
        db.dispose()
    table = Table(title=f"Months (today is {settings.today()} on the product's clock)")
    for column in ("period", "state", "landing days", "confirmed", "prepared", "approved"):
        table.add_column(column)
    table.add_column("locked")
    notes = []
    for facts, history in rows:
        ready = sum(d.ready for d in facts.calendar)
        confirmed = [d for d in facts.calendar if d.confirmed_by]
        locked = next((t for t in reversed(history) if t.transition == month.LOCKED), None)
        table.add_row(
            facts.period,
            facts.state,
            f"{ready}/{len(facts.calendar)} in (to {facts.cutoff})",
            str(len(confirmed)),
            facts.prepared_by or "-",
            ", ".join(f"{e}: {a}" for e, a in sorted(facts.approvers.items())) or "-",
            facts.locked_by or (f"{locked.actor}" if locked else "-"),
        )
        if facts.state in ("open", "complete"):
            notes.append(f"  {facts.period}: {rules.may_close(facts)}")
        elif facts.state != "locked":
            notes.append(f"  {facts.period}: {rules.may_lock(facts)}")
        notes += [
            f"  {facts.period}: landing day {d.day} confirmed by {d.confirmed_by} at "
            f"{d.confirmed_at}: {d.confirmation_reason}"
            for d in confirmed
        ]
    Console(width=max(Console().width, 132)).print(table)
    _say(f"open period: {open_period or (periods[0] if periods else '-')}")
    if notes:
        _say("what blocks each month's next step:\n" + "\n".join(notes))


def print_restatement(settings: Settings, period: str, booked_in: str) -> None:
    """What a reprocess request of a locked month changes, per currency."""
    import polars as pl

    path = settings.warehouse_dir / "restatement" / f"{period}.parquet"
    lines = pl.read_parquet(path)
    by_currency = (
        lines.group_by("currency")
        .agg(lines=pl.len(), amount=pl.col("amount").sum())
        .sort("currency")
    )
    difference = ", ".join(
        f"{row['amount']:,.{_places(row['currency'])}f} {row['currency']} ({row['lines']} lines)"
        for row in by_currency.iter_rows(named=True)
    )
    _say(
        f"{period} restated from today's events and reference data: "
        f"{difference or 'no difference'}. {period} stays as it was locked; the difference is "
        f"billed and booked in {booked_in} (the open period) when it is closed: "
        f"meterclose close --period {booked_in}, once its landing days are in"
    )
