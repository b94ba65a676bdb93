"""Canonical business events of a close, versioned: ContractActivated, UsageRated,
InvoiceIssued, CreditMemoCreated (from the month's tables) and RevenueJournalApproved (at
approval). Each carries its schema version, a correlation id and its source references.

Event ids are deterministic — ``<type>:<key>`` — so a rerun of the close creates the same
events; what an event says is in its JSON payload, whose SHA-256 travels with it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import duckdb
import polars as pl

SCHEMA_VERSION = 1
EVENT_COLUMNS = (
    "event_id",
    "event_type",
    "schema_version",
    "period",
    "correlation_id",
    "payload",
    "payload_sha256",
)


def _finish(frame: pl.DataFrame, event_type: str, key: pl.Expr) -> pl.DataFrame:
    """Wrap each row as an event: the row (less its correlation id and period) is the data."""
    data = pl.struct(pl.all().exclude("correlation_id", "period"))
    return frame.select(
        event_id=pl.lit(f"{event_type}:") + key,
        event_type=pl.lit(event_type),
        schema_version=pl.lit(SCHEMA_VERSION, pl.Int64),
        period=pl.col("period"),
        correlation_id=pl.col("correlation_id"),
        payload=pl.struct(
            pl.lit(event_type).alias("event_type"),
            pl.lit(SCHEMA_VERSION).alias("schema_version"),
            pl.col("correlation_id"),
            pl.col("period"),
            data.alias("data"),
        ).struct.json_encode(),
    )


def close_events(
    period: str, invoices: pl.DataFrame, billable: pl.DataFrame, contracts: pl.DataFrame
) -> pl.DataFrame:
    """The month's events: contracts that started in it, usage rated per contract, and the
    invoices and credit memos issued in its close."""
    activated = contracts.filter(pl.col("start_date").dt.strftime("%Y-%m") == period).select(
        "contract_id",
        "customer_id",
        "plan_id",
        pl.col("start_date").cast(pl.String),
        pl.col("end_date").cast(pl.String),
        "billing_alignment",
        correlation_id=pl.col("contract_id") + ":" + period,
        period=pl.lit(period),
    )
    rated = (
        billable.group_by("contract_id", "customer_id", "currency")
        .agg(
            lines=pl.len(),
            amount=pl.col("amount").sum().cast(pl.String),
            amount_precise=pl.col("amount_precise").sum().cast(pl.String),
            events=pl.col("event_count").sum(),
        )
        .with_columns(correlation_id=pl.col("contract_id") + ":" + period, period=pl.lit(period))
        .sort("contract_id", "currency")
    )
    documents = (
        invoices.group_by(
            "document_type", "invoice_id", "invoice_date", "entity_id", "customer_id",
            "contract_id", "currency",
        )
        .agg(
            total=pl.col("amount").sum().cast(pl.String),
            lines=pl.len(),
            line_ids=pl.col("line_id").sort(),
            service_periods=pl.col("service_period").unique().sort(),
        )
        .with_columns(
            pl.col("invoice_date").cast(pl.String),
            correlation_id=pl.col("contract_id") + ":" + period,
            period=pl.lit(period),
        )
        .sort("invoice_id")
    )  # fmt: skip
    issued = documents.filter(pl.col("document_type") == "invoice").drop("document_type")
    memos = documents.filter(pl.col("document_type") == "credit_memo").drop("document_type")
    parts = [
        _finish(activated, "ContractActivated", pl.col("contract_id")),
        _finish(
            rated, "UsageRated", pl.col("contract_id") + ":" + period + ":" + pl.col("currency")
        ),
        _finish(issued, "InvoiceIssued", pl.col("invoice_id")),
        _finish(memos, "CreditMemoCreated", pl.col("invoice_id")),
    ]
    events = pl.concat(parts).sort("event_id")
    # SHA-256 of each payload, in DuckDB: Polars has no stable cryptographic hash.
    with duckdb.connect() as con:
        con.register("events", events.to_arrow())
        digested = con.sql(
            "SELECT *, sha256(payload) AS payload_sha256 FROM events ORDER BY event_id"
        ).pl()
    assert isinstance(digested, pl.DataFrame)
    return digested.select(EVENT_COLUMNS)


def approval_event(
    period: str, entity_id: str, approved_by: str, digest: str, journals: int, lines: int
) -> dict[str, Any]:
    payload = json.dumps(
        {
            "event_type": "RevenueJournalApproved",
            "schema_version": SCHEMA_VERSION,
            "correlation_id": f"{entity_id}:{period}",
            "period": period,
            "data": {
                "entity_id": entity_id,
                "approved_by": approved_by,
                "journals_digest": digest,
                "journals": journals,
                "lines": lines,
            },
        },
        separators=(",", ":"),
    )
    return {
        "event_id": f"RevenueJournalApproved:{period}:{entity_id}:{digest[:12]}",
        "event_type": "RevenueJournalApproved",
        "schema_version": SCHEMA_VERSION,
        "period": period,
        "correlation_id": f"{entity_id}:{period}",
        "payload": payload,
        "payload_sha256": hashlib.sha256(payload.encode()).hexdigest(),
    }
