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
        rows = documents.select(
            "external_id",
            "period",
            "entity_id",
            "journal_id",
            "accounting_date",
            pl.col("line_count").alias("lines"),
            pl.col("functional_debit").cast(pl.String),
            "payload_sha256",
        ).to_dicts()
        changed: list[Changed] = []
        with self.engine.begin() as conn:
            known: dict[str, Mapping[str, Any]] = {}
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

    def confirm(self, document_ids: Mapping[str, str]) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for external_id, document_id in sorted(document_ids.items()):
                conn.execute(
                    erp_publication.update()
                    .where(erp_publication.c.target == self.target)
                    .where(erp_publication.c.external_id == external_id)
                    .values(
                        state=CONFIRMED,
                        erp_document_id=document_id,
                        last_error=None,
                        confirmed_at=now,
                        updated_at=now,
                    )
                )

    def reject(self, external_id: str, message: str) -> None:
        self._update([external_id], state=REJECTED, last_error=message)

    def note(self, external_ids: Sequence[str], message: str) -> None:
        """Say why documents did not go (a technical fault, a held customer) without
        changing their state."""
        self._update(external_ids, last_error=message)
