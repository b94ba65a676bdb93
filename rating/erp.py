"""What an ERP receives from the canonical journals, and how what it holds is compared.

A *document* is what the ERP books as one journal entry: a part of one of our journals,
split to the ERP's line limit (and, for ERPs whose entry has a single date, by accounting
date) along groups that balance on their own, with its own rounding line. Its external
id is the part id — deterministic, so a rerun finds what an earlier run created.

Its payload digest covers every line as the ERP gets it: a document whose digest changes
after the ERP confirmed it is never sent again silently (see the publisher).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

import polars as pl

from rating.exports import split_journals

# Accounts on which an ERP needs to know the customer (a party on the line).
PARTY_ROLES = ("receivable",)

DOCUMENT_LINE_COLUMNS = (
    "line_no",
    "account",
    "account_role",
    "debit",
    "credit",
    "functional_debit",
    "functional_credit",
    "fx_rate",
    "customer_id",
    "memo",
    "source_ref",
)

_DECIMAL = pl.Decimal(38, 12)


def entity_digests(lines: pl.DataFrame) -> dict[str, tuple[str, int, int]]:
    """Per entity: a digest of its journal lines as they stand, its journals and lines —
    what an approval is given on."""
    digests = {}
    for (entity,), part in lines.sort("journal_id", "line_no").group_by(
        "entity_id", maintain_order=True
    ):
        digest = hashlib.sha256(part.write_csv().encode()).hexdigest()
        digests[str(entity)] = (digest, part["journal_id"].n_unique(), part.height)
    return digests


def document_lines(lines: pl.DataFrame, max_lines: int, single_date: bool) -> pl.DataFrame:
    """Journal lines as the ERP gets them: ``external_id`` is the document, ``line_no``
    the line's number in it, rounding recomputed per document."""
    return (
        split_journals(lines, max_lines, by_date=single_date)
        .with_columns(line_no=pl.col("part_line_no"))
        .rename({"part_id": "external_id"})
        .drop("part_no", "part_line_no")
    )


def documents(parts: pl.DataFrame) -> pl.DataFrame:
    """One row per ERP document (from ``document_lines``), in external-id order: its
    header, its lines (a list of structs, in line order), control totals, the customers
    it names on party accounts and the SHA-256 of its canonical payload."""
    parts = parts.with_columns(
        # A line's canonical text, for the digest: exact decimals as text, fixed order.
        canonical=pl.concat_str(
            [pl.col(c).cast(pl.String).fill_null("") for c in DOCUMENT_LINE_COLUMNS],
            separator="\x1f",
        ),
    )
    header = (
        pl.col("period").first(),
        pl.col("entity_id").first(),
        pl.col("journal_id").first(),
        pl.col("category").first(),
        pl.col("currency").first(),
        pl.col("functional_currency").first(),
        pl.col("accounting_date").max(),
    )
    docs = (
        parts.sort("external_id", "line_no")
        .group_by("external_id", maintain_order=True)
        .agg(
            *header,
            line_count=pl.len(),
            debit=pl.col("debit").sum().cast(_DECIMAL),
            credit=pl.col("credit").sum().cast(_DECIMAL),
            functional_debit=pl.col("functional_debit").sum().cast(_DECIMAL),
            functional_credit=pl.col("functional_credit").sum().cast(_DECIMAL),
            customers=pl.col("customer_id")
            .filter(pl.col("account_role").is_in(PARTY_ROLES) & pl.col("customer_id").is_not_null())
            .unique()
            .sort(),
            lines=pl.struct(*DOCUMENT_LINE_COLUMNS),
            canonical=pl.col("canonical").str.join("\x1e"),
        )
    )
    headers = docs.select(
        pl.concat_str(
            [
                pl.col(c).cast(pl.String)
                for c in ("external_id", "entity_id", "accounting_date", "currency", "category")
            ],
            separator="\x1f",
        )
    ).to_series()
    # One digest per document (tens to hundreds a month), not per line.
    digest = [
        hashlib.sha256(f"{h}\x1d{body}".encode()).hexdigest()
        for h, body in zip(headers, docs["canonical"], strict=True)
    ]
    return docs.drop("canonical").with_columns(payload_sha256=pl.Series(digest, dtype=pl.String))


def ledger_balances(lines: pl.DataFrame) -> pl.DataFrame:
    """Net balances per entity, account and currency (transaction and functional), in the
    shape an ERP's read-back is compared in."""
    return (
        lines.group_by("entity_id", "account", "currency", "functional_currency")
        .agg(
            amount=(pl.col("debit") - pl.col("credit")).sum().cast(_DECIMAL),
            functional_amount=(pl.col("functional_debit") - pl.col("functional_credit"))
            .sum()
            .cast(_DECIMAL),
        )
        .sort("entity_id", "account", "currency")
    )


def erp_controls(
    period: str, ours: pl.DataFrame, theirs: pl.DataFrame, unsent: pl.DataFrame
) -> pl.DataFrame:
    """Reconciliation rows, one per entity × account × currency: our balance against the
    ERP's, the difference explained by documents not (yet) in the ERP (``unsent``: the
    ``document_lines`` of documents awaiting approval, held or rejected)."""
    keys = ["entity_id", "account", "currency"]
    zero = pl.lit(Decimal(0)).cast(_DECIMAL)
    ours_b = ledger_balances(ours)
    theirs_b = theirs.select(*keys, erp_amount="amount", erp_functional="functional_amount")
    unsent_b = ledger_balances(unsent).select(
        *keys, unsent_amount="amount", unsent_functional="functional_amount"
    )
    functional = ours.select("entity_id", "functional_currency").unique("entity_id")
    joined = (
        ours_b.drop("functional_currency")
        .join(theirs_b, on=keys, how="full", coalesce=True)
        .join(unsent_b, on=keys, how="left")
        .drop("functional_currency", strict=False)
        .join(functional, on="entity_id", how="left")
        .with_columns(pl.col(c).fill_null(zero) for c in ("amount", "functional_amount"))
        .with_columns(
            pl.col(c).fill_null(zero)
            for c in ("erp_amount", "erp_functional", "unsent_amount", "unsent_functional")
        )
    )
    rows = []
    for amount, erp, unsent_col, unit in (
        ("functional_amount", "erp_functional", "unsent_functional", "functional"),
        ("amount", "erp_amount", "unsent_amount", "transaction"),
    ):
        rows.append(
            joined.filter(
                pl.lit(unit == "functional") | (pl.col("currency") != pl.col("functional_currency"))
            ).select(
                pl.lit(period).alias("period"),
                "entity_id",
                "currency",
                (pl.lit("erp_account_") + pl.col("account")).alias("control"),
                (
                    pl.lit(f"{unit} ")
                    + (
                        pl.col("functional_currency")
                        if unit == "functional"
                        else pl.col("currency")
                    ).fill_null("")
                ).alias("unit"),
                pl.col(amount).alias("expected"),
                pl.col(erp).alias("actual"),
                (pl.col(amount) - pl.col(erp)).alias("variance"),
                pl.col(unsent_col).alias("unsent"),
            )
        )
    controls = pl.concat(rows).with_columns(
        explained=pl.when(pl.col("variance") == pl.col("unsent"))
        .then(pl.col("variance"))
        .otherwise(zero)
    )
    return controls.select(
        "period",
        "entity_id",
        "currency",
        "control",
        "unit",
        "expected",
        "actual",
        "variance",
        "explained",
        status=pl.when(pl.col("variance") == 0)
        .then(pl.lit("tied"))
        .when(pl.col("variance") == pl.col("explained"))
        .then(pl.lit("explained"))
        .otherwise(pl.lit("unexplained")),
        explanation=pl.when(pl.col("variance") == 0)
        .then(pl.lit("journal_lines and the ERP's posted lines agree"))
        .when(pl.col("variance") == pl.col("explained"))
        .then(pl.lit("documents not in the ERP yet (awaiting approval, held or rejected)"))
        .otherwise(
            pl.lit("the ERP's posted lines differ from journal_lines by more than ")
            + pl.lit("the documents not sent: look for postings made in the ERP")
        ),
    ).sort("entity_id", "control", "currency", "unit")


EXCEPTION_COLUMNS = (
    "kind",
    "severity",
    "entity_id",
    "customer_id",
    "reason",
    "action",
    "amount",
    "currency",
)


def erp_exceptions(period: str, cases: pl.DataFrame, controls: pl.DataFrame) -> pl.DataFrame:
    """The exception queue's rows for publishing: ``cases`` (one per rejected, held or
    changed document, or failed batch: EXCEPTION_COLUMNS) and every ERP control with an
    unexplained variance. Ids are deterministic, as the close's are."""
    variances = controls.filter(pl.col("status") == "unexplained").select(
        pl.lit("erp_balance_differs").alias("kind"),
        pl.lit("high").alias("severity"),
        "entity_id",
        pl.lit(None, pl.String).alias("customer_id"),
        (
            pl.col("control").str.replace("erp_account_", "account ")
            + pl.lit(" (")
            + pl.col("unit")
            + pl.lit("): journal_lines ")
            + pl.col("expected").cast(pl.String)
            + pl.lit(", ERP ")
            + pl.col("actual").cast(pl.String)
        ).alias("reason"),
        pl.lit(
            "Find the ERP postings to our journal that did not come from meterclose, "
            "or the document missing there, and correct the ERP"
        ).alias("action"),
        pl.col("variance").alias("amount"),
        "currency",
    )
    frame = pl.concat(
        [
            cases.select(EXCEPTION_COLUMNS).cast({"amount": _DECIMAL}),
            variances.cast({"amount": _DECIMAL}),
        ],
        how="vertical_relaxed",
    )
    key = pl.concat_str(
        [
            pl.col(c).cast(pl.String).fill_null("")
            for c in ("kind", "entity_id", "customer_id", "reason")
        ],
        separator="|",
    )
    return (
        frame.with_columns(
            exception_id=pl.lit(f"EX-{period}-") + key.map_batches(_md5_12, return_dtype=pl.String),
            period=pl.lit(period),
            contract_id=pl.lit(None, pl.String),
            count=pl.lit(1, pl.Int64),
            status=pl.lit("open"),
        )
        .unique("exception_id", keep="first", maintain_order=True)
        .select(
            "exception_id",
            "period",
            "kind",
            "severity",
            "entity_id",
            "contract_id",
            "customer_id",
            "reason",
            "action",
            "count",
            "amount",
            "currency",
            "status",
        )
        .sort(
            pl.col("severity").replace_strict(_SEVERITY_ORDER, return_dtype=pl.Int8),
            "kind",
            "entity_id",
            "reason",
            nulls_last=True,
        )
    )


_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2, "info": 3}


def _md5_12(keys: pl.Series) -> pl.Series:
    return pl.Series([hashlib.md5(k.encode()).hexdigest()[:12] for k in keys], dtype=pl.String)
