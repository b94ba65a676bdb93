"""ERP import files from the canonical journal lines: split to a target's line limit without
breaking balance, rendered per ERP, with a manifest of files, checksums and control totals.

One canonical model (``journal_lines``), thin renderers:

- ``generic``: every canonical column, as Parquet and CSV;
- ``netsuite``: a NetSuite journal-entry CSV, one row per line with the header fields
  repeated; one currency and one exchange rate per journal entry, so journals are split by
  rate date too; NetSuite converts at that rate and books its own rounding, so our
  functional rounding lines are left out;
- ``oracle``: an Oracle Fusion GL_INTERFACE (FBDI) CSV, one row per line with entered and
  accounted amounts and a per-line conversion rate; journals grouped by REFERENCE4.

A journal is split into parts of at most ``max_lines`` lines along groups that balance on
their own (a document with its receivable; a release's deferred and revenue pair), never
through one; each part gets its own functional rounding line, so every part balances in
both currencies. Part external ids are ``<journal_id>-<n>`` (``n`` from 1), deterministic.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import polars as pl

from rating.currency import MINOR_UNITS

TARGETS = ("generic", "netsuite", "oracle")
# NetSuite's documentation disagrees (200 vs 1,000 lines per synchronous journal): design
# for 200. Oracle takes large journals; 10,000 keeps files reviewable.
LINE_LIMITS = {"generic": 1_000_000, "netsuite": 200, "oracle": 10_000}


@dataclass(frozen=True)
class ExportFile:
    name: str
    data: bytes
    rows: int


def _money(value: Decimal | None, currency: str) -> str:
    if value is None:
        return ""
    places = MINOR_UNITS[currency]
    return f"{value:.{places}f}"


def split_journals(
    lines: pl.DataFrame, max_lines: int, by_rate: bool = False, by_date: bool = False
) -> pl.DataFrame:
    """Canonical lines with ``part_id`` (the external id of the part a line is in) and
    ``part_line_no``; rounding lines recomputed per part. ``by_rate`` gives each exchange
    rate date its own parts, ``by_date`` each accounting date (for ERPs whose journal
    entry has a single date; the part id is then ``<journal>-<yyyymmdd>-<n>``)."""
    if max_lines < 3:
        raise ValueError("a journal part needs room for a balanced pair and a rounding line")
    keys = [
        pl.col(c).cast(pl.String).fill_null("")
        for c, wanted in (("fx_rate_date", by_rate), ("accounting_date", by_date))
        if wanted
    ]
    body = lines.filter(pl.col("account_role") != "rounding").with_columns(
        group=pl.coalesce("invoice_id", "line_id", pl.lit("")),
        rate_key=pl.concat_str(keys, separator="|") if keys else pl.lit(""),
    )
    groups = (
        body.group_by("journal_id", "rate_key", "group")
        .agg(size=pl.len(), first=pl.col("line_no").min())
        .sort("journal_id", "rate_key", "first")
    )
    largest = int(groups["size"].max() or 1)  # type: ignore[arg-type]
    if largest > max_lines - 1:
        raise ValueError(
            f"a balanced group of {largest} lines does not fit a journal part of {max_lines}"
        )
    # Whole groups, in order: a part holds at most capacity − largest + 1 lines' worth of
    # group starts, so with its last group and the rounding line it never exceeds the limit.
    step = max_lines - 1 - largest + 1
    groups = groups.with_columns(
        before=pl.col("size").cum_sum().over("journal_id", "rate_key") - pl.col("size")
    ).with_columns(part=(pl.col("before") // step))
    parts = groups.select("journal_id", "rate_key").unique().sort("journal_id", "rate_key")
    parts = parts.with_columns(
        rate_no=pl.col("rate_key").rank("dense").over("journal_id").cast(pl.Int64)
    )
    numbered = (
        groups.join(parts, on=["journal_id", "rate_key"])
        .with_columns(key=pl.struct("rate_no", "part"))
        .with_columns(part_no=pl.col("key").rank("dense").over("journal_id").cast(pl.Int64))
        .select("journal_id", "rate_key", "group", "part_no", "part")
    )
    # By date, a part is named by its date and its place within that date, so a document
    # added on another day never renames it (its external id is what the ERP knows).
    suffix = (
        pl.col("rate_key").str.split("|").list.last().str.replace_all("-", "")
        + "-"
        + (pl.col("part") + 1).cast(pl.String)
        if by_date
        else pl.col("part_no").cast(pl.String)
    )
    placed = (
        body.join(numbered, on=["journal_id", "rate_key", "group"])
        .with_columns(part_id=pl.col("journal_id") + "-" + suffix)
        .drop("part")
        .sort("part_id", "line_no")
    )
    rounding = (
        placed.group_by("part_id")
        .agg(
            pl.col("accounting_date").max(),
            *(
                pl.col(c).first()
                for c in (
                    "period",
                    "entity_id",
                    "erp_subsidiary",
                    "journal_id",
                    "category",
                    "currency",
                    "functional_currency",
                    "service_period",
                    "part_no",
                )
            ),
        )
        .join(
            placed.group_by("part_id").agg(
                residue=(pl.col("functional_debit") - pl.col("functional_credit")).sum()
            ),
            on="part_id",
        )
        .filter(pl.col("residue") != 0)
        .join(
            lines.filter(pl.col("account_role") == "rounding")
            .select("entity_id", "account")
            .unique("entity_id"),
            on="entity_id",
            how="left",
        )
    )
    decimal = pl.Decimal(38, 12)
    rounding_lines = rounding.select(
        "accounting_date",
        "period",
        "entity_id",
        "erp_subsidiary",
        "journal_id",
        "category",
        pl.lit(None, pl.Int64).alias("line_no"),
        "account",
        pl.lit("rounding").alias("account_role"),
        pl.lit(Decimal(0)).cast(decimal).alias("debit"),
        pl.lit(Decimal(0)).cast(decimal).alias("credit"),
        "currency",
        "functional_currency",
        pl.lit(None, decimal).alias("fx_rate"),
        pl.lit(None, pl.Date).alias("fx_rate_date"),
        pl.lit(None, pl.Date).alias("fx_quote_date"),
        pl.when(pl.col("residue") < 0)
        .then(-pl.col("residue"))
        .otherwise(0)
        .cast(decimal)
        .alias("functional_debit"),
        pl.when(pl.col("residue") > 0)
        .then(pl.col("residue"))
        .otherwise(0)
        .cast(decimal)
        .alias("functional_credit"),
        *(
            pl.lit(None, pl.String).alias(c)
            for c in (
                "product_id",
                "product_family",
                "business_unit",
                "department",
                "customer_id",
                "contract_id",
                "invoice_id",
                "line_id",
            )
        ),
        "service_period",
        (pl.lit("FX rounding, journal ") + pl.col("part_id")).alias("memo"),
        pl.col("part_id").alias("source_ref"),
        pl.col("part_id").alias("correlation_id"),
        "part_no",
        "part_id",
    )
    columns = [*lines.columns, "part_no", "part_id"]
    combined = pl.concat(
        [placed.select(columns), rounding_lines.select(columns)], how="vertical_relaxed"
    )
    return (
        combined.with_columns(is_rounding=pl.col("account_role") == "rounding")
        .sort("part_id", "is_rounding", "line_no", nulls_last=True)
        .with_columns(part_line_no=pl.int_range(1, pl.len() + 1).over("part_id"))
        .drop("is_rounding")
    )


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _reversal_date(row: dict[str, Any]) -> str:
    """Accruals, booked on a period's last day, reverse on the next day."""
    if row["category"] != "usage_accrual":
        return ""
    return str((row["accounting_date"] + timedelta(days=1)).isoformat())


def render_netsuite(lines: pl.DataFrame) -> ExportFile:
    parts = split_journals(lines, LINE_LIMITS["netsuite"], by_rate=True).filter(
        pl.col("account_role") != "rounding"
    )
    header = [
        "External ID", "Date", "Posting Period", "Subsidiary", "Currency", "Exchange Rate",
        "Reversal Date", "Memo", "Approved", "Account", "Debit", "Credit", "Line Memo",
        "Department", "Class", "Location", "Name",
    ]  # fmt: skip
    rows = []
    for row in parts.iter_rows(named=True):
        day = row["accounting_date"]
        rows.append(
            [
                row["part_id"],
                day.strftime("%m/%d/%Y"),
                day.strftime("%b %Y"),
                row["erp_subsidiary"],
                row["currency"],
                "" if row["fx_rate"] is None else f"{row['fx_rate'].normalize():f}",
                _reversal_date(row),
                f"meterclose {row['category']} {row['period']} {row['entity_id']}",
                "F",
                row["account"] or "",
                _money(row["debit"], row["currency"]) if row["debit"] else "",
                _money(row["credit"], row["currency"]) if row["credit"] else "",
                row["memo"],
                row["department"] or "",
                row["business_unit"] or "",
                "",
                row["customer_id"] or "",
            ]
        )
    return ExportFile("netsuite_journals.csv", _csv(header, rows), len(rows))


def render_oracle(lines: pl.DataFrame, group_id: int) -> ExportFile:
    parts = split_journals(lines, LINE_LIMITS["oracle"])
    header = [
        "STATUS_CODE", "LEDGER_ID", "ACCOUNTING_DATE", "USER_JE_SOURCE_NAME",
        "USER_JE_CATEGORY_NAME", "CURRENCY_CODE", "DATE_CREATED", "ACTUAL_FLAG",
        *(f"SEGMENT{n}" for n in range(1, 31)),
        "ENTERED_DR", "ENTERED_CR", "ACCOUNTED_DR", "ACCOUNTED_CR",
        "USER_CURRENCY_CONVERSION_TYPE", "CURRENCY_CONVERSION_DATE", "CURRENCY_CONVERSION_RATE",
        "REFERENCE1", "REFERENCE2", "REFERENCE4", "REFERENCE5", "REFERENCE7", "REFERENCE8",
        "REFERENCE10", "REFERENCE21", "REFERENCE22", "REFERENCE23", "REFERENCE24",
        "GROUP_ID", "PERIOD_NAME", "LEDGER_NAME",
    ]  # fmt: skip
    rows = []
    for row in parts.iter_rows(named=True):
        day = row["accounting_date"]
        segments = [
            row["erp_subsidiary"],
            row["account"] or "",
            row["department"] or "",
            row["product_family"] or "",
            row["business_unit"] or "",
        ] + [""] * 25
        currency, functional = row["currency"], row["functional_currency"]
        foreign = currency != functional
        reversal = _reversal_date(row)
        rows.append(
            [
                "NEW",
                row["erp_subsidiary"],
                day.strftime("%Y/%m/%d"),
                "meterclose",
                row["category"],
                currency,
                day.strftime("%Y/%m/%d"),
                "A",
                *segments,
                _money(row["debit"], currency) if row["debit"] else "",
                _money(row["credit"], currency) if row["credit"] else "",
                _money(row["functional_debit"], functional) if row["functional_debit"] else "",
                _money(row["functional_credit"], functional) if row["functional_credit"] else "",
                "User" if foreign and row["fx_rate"] is not None else "",
                row["fx_rate_date"].strftime("%Y/%m/%d") if foreign and row["fx_rate_date"] else "",
                f"{row['fx_rate'].normalize():f}" if foreign and row["fx_rate"] else "",
                f"meterclose {row['period']} {row['entity_id']}",
                f"meterclose close of {row['period']}",
                row["part_id"],
                f"{row['category']} {row['period']} {currency}",
                "Y" if reversal else "",
                (reversal[:7] if reversal else ""),
                row["memo"],
                row["line_id"] or "",
                row["invoice_id"] or "",
                row["correlation_id"],
                row["source_ref"],
                str(group_id),
                day.strftime("%b-%y"),
                row["entity_id"],
            ]
        )
    return ExportFile("oracle_gl_interface.csv", _csv(header, rows), len(rows))


def render_generic(lines: pl.DataFrame) -> list[ExportFile]:
    csv_buffer = io.BytesIO()
    lines.write_csv(csv_buffer)
    parquet_buffer = io.BytesIO()
    lines.write_parquet(parquet_buffer, compression="zstd", statistics=True)
    return [
        ExportFile("journal_lines.csv", csv_buffer.getvalue(), lines.height),
        ExportFile("journal_lines.parquet", parquet_buffer.getvalue(), lines.height),
    ]


def control_totals(lines: pl.DataFrame) -> list[dict[str, str]]:
    totals = (
        lines.group_by("period", "entity_id", "currency", "account")
        .agg(
            lines=pl.len(),
            debit=pl.col("debit").sum(),
            credit=pl.col("credit").sum(),
            functional_debit=pl.col("functional_debit").sum(),
            functional_credit=pl.col("functional_credit").sum(),
        )
        .sort("period", "entity_id", "currency", "account", nulls_last=True)
    )
    return [
        {k: (str(v) if v is not None else None) for k, v in row.items()}  # type: ignore[misc]
        for row in totals.iter_rows(named=True)
    ]


def render_all(lines: pl.DataFrame, period: str) -> tuple[list[ExportFile], dict[str, Any]]:
    """Every file of a month's export and its manifest (without version: the caller adds
    it). Deterministic: the same journal lines give the same bytes."""
    ordered = lines.sort("journal_id", "line_no")
    group_id = int(period.replace("-", ""))
    files = [
        *render_generic(ordered),
        render_netsuite(ordered),
        render_oracle(ordered, group_id),
    ]
    manifest: dict[str, Any] = {
        "period": period,
        "journals": ordered["journal_id"].n_unique(),
        "journal_lines": ordered.height,
        "files": [
            {
                "name": f.name,
                "sha256": hashlib.sha256(f.data).hexdigest(),
                "bytes": len(f.data),
                "rows": f.rows,
            }
            for f in files
        ],
        "control_totals": control_totals(ordered),
    }
    return files, manifest


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
