"""Journal approval: who approved which period's journals for which entity, on which
content. Shared by ``meterclose approve`` and the ``approve_job`` launched from the UI."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from rating.erp import entity_digests
from rating.events import approval_event
from resources.control_db import ControlDb


class ApprovalError(ValueError):
    """The approval asked for cannot be given (month not closed, unknown entity)."""


def journal_digests(warehouse_dir: Path, period: str) -> dict[str, tuple[str, int, int]]:
    """Per entity: a digest of its journal lines for the period, its journals and lines."""
    path = warehouse_dir / "journal_lines" / f"{period}.parquet"
    if not path.exists():
        raise ApprovalError(f"{period} has not been closed: no journal lines at {path}")
    return entity_digests(pl.read_parquet(path))


def approved_entities(
    digests: dict[str, tuple[str, int, int]], approvals: dict[str, dict[str, object]]
) -> set[str]:
    """Entities whose journals are approved as they stand: the approval's digest is the
    journals' digest now (``journal_digests`` / ``rating.erp.entity_digests``)."""
    return {
        entity
        for entity, (digest, _, _) in digests.items()
        if approvals.get(entity, {}).get("journals_digest") == digest
    }


def approve_journals(
    warehouse_dir: Path,
    db: ControlDb,
    period: str,
    entities: Sequence[str] | None,
    approved_by: str,
) -> list[str]:
    """Approve a closed month's journals for some entities (all when None or empty), on
    their content as it stands, and queue a RevenueJournalApproved event for each.
    Returns the entities approved."""
    if not approved_by.strip():
        raise ApprovalError("an approval needs the approver's name")
    digests = journal_digests(warehouse_dir, period)
    chosen = sorted(digests) if not entities else list(entities)
    unknown = [e for e in chosen if e not in digests]
    if unknown:
        raise ApprovalError(f"{period} has no journals for entity {', '.join(unknown)}")
    for entity in chosen:
        digest, journals, lines = digests[entity]
        event = approval_event(period, entity, approved_by, digest, journals, lines)
        db.approve(period, entity, approved_by, digest, journals, lines, events=[event])
    return chosen
