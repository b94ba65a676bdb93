"""The publish ledger in the control database: one row per ERP document and target.

Every state change is its own short transaction, written before the ERP call it
describes (``sent``) or after the ERP answered (``confirmed``, ``rejected``), so a
publisher killed at any point leaves rows that say what might have happened; the next run
looks those documents up in the ERP before it creates anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import sqlalchemy as sa

from resources.control_db import erp_publication

PENDING, SENT, CONFIRMED, REJECTED = "pending", "sent", "confirmed", "rejected"
STATES = (PENDING, SENT, CONFIRMED, REJECTED)


@dataclass(frozen=True)
class Changed:
    """A document whose content changed after it was handed to the ERP."""

    external_id: str
    entity_id: str
    state: str
    old_sha256: str
    new_sha256: str


# What the ledger keeps of a document's content.
_CONTENT = (
    "external_id",
    "period",
    "entity_id",
    "journal_id",
    "accounting_date",
    "lines",
    "functional_debit",
    "payload_sha256",
)


def ledger_rows(documents: pl.DataFrame) -> pl.DataFrame:
    """``rating.erp.documents`` in the ledger's terms."""
    return documents.with_columns(
        lines=pl.col("line_count"), functional_debit=pl.col("functional_debit").cast(pl.String)
    )


def _chunks(items: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class PublishLedger:
    def __init__(self, engine: sa.Engine, target: str) -> None:
        self.engine = engine
        self.target = target

    def register(self, documents: pl.DataFrame) -> list[Changed]:
        """Record a month's documents. New ones are pending; unchanged ones keep their
        state; a changed one still pending or rejected takes the new content and is
        pending again; a changed one already sent or confirmed is left as it is and
        returned — the ERP may hold the old content, which only a controller can undo."""
        now = datetime.now(UTC)
        rows = [{k: r[k] for k in _CONTENT} for r in ledger_rows(documents).to_dicts()]
        changed: list[Changed] = []
        with self.engine.begin() as conn:
            known: dict[str, sa.RowMapping] = {}
            for ids in _chunks([r["external_id"] for r in rows]):
                known.update(
                    (row["external_id"], row)
                    for row in conn.execute(
                        sa.select(
                            erp_publication.c.external_id,
                            erp_publication.c.payload_sha256,
                            erp_publication.c.state,
                        )
                        .where(erp_publication.c.target == self.target)
                        .where(erp_publication.c.external_id.in_(ids))
                    ).mappings()
                )
            new = []
            for row in rows:
                old = known.get(row["external_id"])
                if old is None:
                    new.append(
                        {**row, "target": self.target, "state": PENDING, "attempts": 0,
                         "created_at": now, "updated_at": now}
                    )  # fmt: skip
                elif old["payload_sha256"] == row["payload_sha256"]:
                    continue
                elif old["state"] in (PENDING, REJECTED):
                    conn.execute(
                        erp_publication.update()
                        .where(erp_publication.c.target == self.target)
                        .where(erp_publication.c.external_id == row["external_id"])
                        .values(**row, state=PENDING, last_error=None, updated_at=now)
                    )
                else:
                    changed.append(
                        Changed(
                            row["external_id"],
                            row["entity_id"],
                            old["state"],
                            old["payload_sha256"],
                            row["payload_sha256"],
                        )
                    )
            if new:
                conn.execute(erp_publication.insert(), new)
        return changed

    def rows(self, period: str | None = None) -> list[dict[str, Any]]:
        query = (
            sa.select(erp_publication)
            .where(erp_publication.c.target == self.target)
            .order_by(erp_publication.c.external_id)
        )
        if period is not None:
            query = query.where(erp_publication.c.period == period)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def _update(self, external_ids: Sequence[str], **values: Any) -> None:
        values.setdefault("updated_at", datetime.now(UTC))
        with self.engine.begin() as conn:
            for ids in _chunks(list(external_ids)):
                conn.execute(
                    erp_publication.update()
                    .where(erp_publication.c.target == self.target)
                    .where(erp_publication.c.external_id.in_(ids))
                    .values(**values)
                )

    def mark_sent(self, external_ids: Sequence[str]) -> None:
        now = datetime.now(UTC)
        self._update(
            external_ids,
            state=SENT,
            attempts=erp_publication.c.attempts + 1,
            sent_at=now,
            updated_at=now,
        )

    def confirm(
        self, document_ids: Mapping[str, str], sent: Mapping[str, str] | None = None
    ) -> None:
        """Mark documents confirmed with their ERP ids. With ``sent`` (external id →
        the payload digest that was sent), only rows still holding that content are: a
        row whose content another run replaced meanwhile is left for the next run."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for external_id, document_id in sorted(document_ids.items()):
                query = (
                    erp_publication.update()
                    .where(erp_publication.c.target == self.target)
                    .where(erp_publication.c.external_id == external_id)
                )
                if sent is not None and external_id in sent:
                    query = query.where(erp_publication.c.payload_sha256 == sent[external_id])
                conn.execute(
                    query.values(
                        state=CONFIRMED,
                        erp_document_id=document_id,
                        last_error=None,
                        confirmed_at=now,
                        updated_at=now,
                    )
                )

    def reject(self, external_id: str, message: str) -> None:
        self._update([external_id], state=REJECTED, last_error=message)

    def replace_content(self, document: Mapping[str, Any]) -> None:
        """A document sent but never created in the ERP takes its new content, pending."""
        row = {k: document[k] for k in _CONTENT}
        self._update([row["external_id"]], **row, state=PENDING, last_error=None)

    def requeue_rejected(self, period: str, requested_by: str) -> list[str]:
        """Send a period's rejected documents again (the cause was fixed in the ERP): back
        to pending, the request and the ERP's last answer kept in last_error."""
        ids = [r["external_id"] for r in self.rows(period) if r["state"] == REJECTED]
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for ids_chunk in _chunks(ids):
                conn.execute(
                    erp_publication.update()
                    .where(erp_publication.c.target == self.target)
                    .where(erp_publication.c.external_id.in_(ids_chunk))
                    .values(
                        state=PENDING,
                        last_error=sa.literal(
                            f"requeued by {requested_by} at {now:%Y-%m-%d %H:%M} UTC after: "
                        )
                        + sa.func.coalesce(erp_publication.c.last_error, ""),
                        updated_at=now,
                    )
                )
        return ids

    def note(self, external_ids: Sequence[str], message: str) -> None:
        """Say why documents did not go (a technical fault, a held customer) without
        changing their state."""
        self._update(external_ids, last_error=message)
