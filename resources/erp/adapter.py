"""The ERP adapter interface: what the publisher needs from any ERP. NetSuite, Oracle or
others plug in by implementing ``ErpAdapter``; assets and the publisher never name an ERP,
and only ``resources.erp.resource`` picks one from configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

import polars as pl


@dataclass(frozen=True)
class ErpDocument:
    """One journal entry for the ERP (see ``rating.erp.documents``)."""

    external_id: str
    entity_id: str
    period: str
    journal_id: str
    category: str
    accounting_date: date
    currency: str
    functional_currency: str
    payload_sha256: str
    lines: Sequence[Mapping[str, Any]]
    customers: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str
    entity_id: str
    currency: str


@dataclass(frozen=True)
class Found:
    """A document the ERP already holds, under our external id."""

    external_id: str
    document_id: str
    posted: bool


class BusinessRejection(Exception):
    """The ERP refused a document on its merits (closed period, unknown account,
    unbalanced): not retried, it goes to the exception queue with the ERP's message."""


class TechnicalFault(Exception):
    """A fault that left the outcome unknown or the call undone (timeouts, resets, 5xx,
    throttling beyond the retries): the publisher retries, looking up before creating."""


class AlreadyExists(TechnicalFault):
    """A create collided with a document already there under the same external id (a
    concurrent publisher, or an answer lost on the way back): look it up again."""


class ErpAdapter(Protocol):
    target: str  # names the ERP instance in the publish ledger, e.g. "tryton:erp@host"
    max_lines: int  # lines per document the ERP takes
    single_date: bool  # one accounting date per document
    batch_size: int  # documents per create call

    def find(self, entity_id: str, external_ids: Sequence[str]) -> dict[str, Found]: ...

    def create(self, documents: Sequence[ErpDocument]) -> dict[str, str]:
        """Create and post the documents (one entity) as one unit: all or none. Returns
        external id → ERP document id."""
        ...

    def post(self, entity_id: str, document_ids: Sequence[str]) -> None: ...

    def discard(self, entity_id: str, document_ids: Sequence[str]) -> None:
        """Delete drafts the ERP refused to post, so a corrected document can be created
        under the same external id."""
        ...

    def sync_customers(self, customers: Sequence[Customer]) -> dict[str, str]:
        """Create missing customers; returns customer id → why the ERP's record
        disagrees with ours (never overwritten)."""
        ...

    def balances(self, period: str, entity_ids: Sequence[str]) -> pl.DataFrame:
        """What the ERP holds for the period in our journal: entity_id, account,
        currency, amount (transaction), functional_amount — net debit minus credit."""
        ...

    def close(self) -> None: ...
