"""Publish a month's approved journals to an ERP, exactly once in effect.

For each batch of documents (one entity, up to the adapter's batch size):

1. the ledger marks them ``sent`` (the outcome is unknown from here on);
2. the ERP is asked which of them it already holds under their external ids: those are
   confirmed (posted first if a crash left them in draft), never created again;
3. the rest are created and posted in one call, then confirmed.

A technical fault anywhere retries the whole batch from step 1 (tenacity, exponential
backoff with jitter) — the lookup makes that safe, and the ERP's unique index on the
external id makes it safe even against a second publisher. A business rejection of a
batch is narrowed down by sending its documents one at a time, so only the documents the
ERP refuses are ``rejected``, with the ERP's message, and they are not retried until their
content changes. Killing the publisher at any point and running it again therefore
leaves every document in the ERP once.

Only documents of entities whose journals are approved as they stand are sent; the
others stay pending. Customers named on party accounts are synchronised first; a document
naming a customer whose ERP record disagrees with ours is held, not sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import tenacity

from resources.erp.adapter import (
    BusinessRejection,
    Customer,
    ErpAdapter,
    ErpDocument,
    TechnicalFault,
)
from resources.erp.publish_ledger import (
    CONFIRMED,
    PENDING,
    REJECTED,
    SENT,
    Changed,
    PublishLedger,
    ledger_rows,
)


@dataclass
class PublishReport:
    target: str
    period: str
    documents: int = 0
    created: int = 0
    found: int = 0
    rejected: dict[str, str] = field(default_factory=dict)  # external id → ERP's message
    awaiting_approval: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # external id → why
    changed: list[Changed] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # external id → last fault
    customer_conflicts: dict[str, str] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    elapsed_seconds: float = 0.0


def to_documents(docs: pl.DataFrame) -> list[ErpDocument]:
    """The rows of ``rating.erp.documents`` as adapter documents."""
    return [
        ErpDocument(
            external_id=row["external_id"],
            entity_id=row["entity_id"],
            period=row["period"],
            journal_id=row["journal_id"],
            category=row["category"],
            accounting_date=row["accounting_date"],
            currency=row["currency"],
            functional_currency=row["functional_currency"],
            payload_sha256=row["payload_sha256"],
            lines=row["lines"],
            customers=tuple(row["customers"] or ()),
        )
        for row in docs.iter_rows(named=True)
    ]


def _batches(documents: Sequence[ErpDocument], size: int) -> list[list[ErpDocument]]:
    by_entity: dict[str, list[ErpDocument]] = {}
    for doc in sorted(documents, key=lambda d: d.external_id):
        by_entity.setdefault(doc.entity_id, []).append(doc)
    return [
        docs[start : start + size]
        for _, docs in sorted(by_entity.items())
        for start in range(0, len(docs), size)
    ]


class Publisher:
    def __init__(
        self,
        adapter: ErpAdapter,
        ledger: PublishLedger,
        *,
        concurrency: int = 2,
        attempts: int = 5,
        backoff_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.adapter = adapter
        self.ledger = ledger
        self.concurrency = max(1, concurrency)
        self.log = log
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TechnicalFault),
            stop=tenacity.stop_after_attempt(max(1, attempts)),
            wait=tenacity.wait_exponential_jitter(initial=backoff_seconds, max=backoff_max_seconds),
            reraise=True,
        )

    def publish(
        self,
        period: str,
        docs: pl.DataFrame,
        approved_entities: set[str],
        customers: Sequence[Customer],
    ) -> PublishReport:
        started = time.monotonic()
        report = PublishReport(self.adapter.target, period, documents=docs.height)
        report.changed = self._settle_changed(self.ledger.register(docs), docs)
        changed = {c.external_id for c in report.changed}
        states = {r["external_id"]: r["state"] for r in self.ledger.rows(period)}
        candidates = [
            d
            for d in to_documents(docs)
            if states.get(d.external_id) in (PENDING, SENT) and d.external_id not in changed
        ]
        ready = [d for d in candidates if d.entity_id in approved_entities]
        report.awaiting_approval = [
            d.external_id for d in candidates if d.entity_id not in approved_entities
        ]
        ready = self._hold_for_customers(ready, customers, report)
        batches = _batches(ready, self.adapter.batch_size)
        if batches:
            self.log(
                f"publishing {len(ready)} document(s) of {period} to {self.adapter.target} "
                f"in {len(batches)} batch(es), {self.concurrency} at a time"
            )
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            outcomes = list(pool.map(self._batch_outcome, batches))
        for created, found, rejected, failed in outcomes:
            report.created += created
            report.found += found
            report.rejected.update(rejected)
            report.failed.update(failed)
        self._resolve_sent(period, report)
        rows = self.ledger.rows(period)
        report.states = {
            state: sum(1 for r in rows if r["state"] == state)
            for state in (PENDING, SENT, CONFIRMED, REJECTED)
        }
        # Rejections from earlier runs stay in the report until their content changes or
        # a controller queues them again (publish --retry-rejected).
        report.rejected.update(
            {r["external_id"]: r["last_error"] or "" for r in rows if r["state"] == REJECTED}
        )
        report.elapsed_seconds = time.monotonic() - started
        return report

    def _settle_changed(self, changed: list[Changed], docs: pl.DataFrame) -> list[Changed]:
        """A document whose content changed while it was ``sent`` may never have reached
        the ERP: if it is not there, it simply takes the new content; a draft is
        discarded first. Only one the ERP holds, posted, stays changed."""
        still: list[Changed] = []
        by_id = {r["external_id"]: r for r in ledger_rows(docs).to_dicts()}
        for change in changed:
            if change.state != SENT:
                still.append(change)
                continue
            try:
                there = self._retrying(
                    self.adapter.find, change.entity_id, [change.external_id]
                ).get(change.external_id)
                if there is not None and not there.posted:
                    self.adapter.discard(change.entity_id, [there.document_id])
                    there = None
            except (TechnicalFault, BusinessRejection):
                still.append(change)
                continue
            if there is None:
                self.ledger.replace_content(by_id[change.external_id])
            else:
                still.append(change)
        return still

    def _resolve_sent(self, period: str, report: PublishReport) -> None:
        """Documents left ``sent`` (their batch ran out of retries) may have reached the
        ERP all the same: one more lookup confirms those that did, so the reconciliation
        counts as missing only what is missing."""
        left: dict[str, list[str]] = {}
        for row in self.ledger.rows(period):
            if row["state"] == SENT:
                left.setdefault(row["entity_id"], []).append(row["external_id"])
        for entity, ids in sorted(left.items()):
            try:
                found = self.adapter.find(entity, ids)
            except (TechnicalFault, BusinessRejection):
                continue
            posted = {i: f.document_id for i, f in found.items() if f.posted}
            self.ledger.confirm(posted)
            for external_id in posted:
                report.failed.pop(external_id, None)
            report.found += len(posted)

    def _hold_for_customers(
        self, ready: list[ErpDocument], customers: Sequence[Customer], report: PublishReport
    ) -> list[ErpDocument]:
        named = sorted({c for d in ready for c in d.customers})
        if not named:
            return ready
        known = {c.customer_id: c for c in customers}
        unknown = [c for c in named if c not in known]
        conflicts = {c: "not in customers.csv" for c in unknown}
        try:
            conflicts.update(
                self._retrying(self.adapter.sync_customers, [known[c] for c in named if c in known])
            )
        except BusinessRejection as refusal:
            conflicts.update({c: f"the ERP refused the customer sync: {refusal}" for c in named})
        report.customer_conflicts = conflicts
        held = {
            d.external_id: "; ".join(f"{c}: {conflicts[c]}" for c in d.customers if c in conflicts)
            for d in ready
            if any(c in conflicts for c in d.customers)
        }
        for external_id, why in held.items():
            self.ledger.note([external_id], f"held: customer record disagrees — {why}")
        report.held = held
        return [d for d in ready if d.external_id not in held]

    def _batch_outcome(
        self, batch: list[ErpDocument]
    ) -> tuple[int, int, dict[str, str], dict[str, str]]:
        """(created, found, rejected, failed) for one batch; never raises for a fault the
        ledger can carry to the next run."""
        try:
            created, found, rejected = self._retrying(self._publish_batch, batch)
            return created, found, rejected, {}
        except TechnicalFault as fault:
            message = f"technical fault after retries: {fault}"[:2000]
            self.ledger.note([d.external_id for d in batch], message)
            return 0, 0, {}, {d.external_id: message for d in batch}
        except BusinessRejection as refusal:
            # Refused before any document could be created (no company for the entity,
            # no journal): every document of the batch, with the ERP's reason.
            for doc in batch:
                self.ledger.reject(doc.external_id, str(refusal))
            return 0, 0, {d.external_id: str(refusal) for d in batch}, {}

    def _publish_batch(self, batch: list[ErpDocument]) -> tuple[int, int, dict[str, str]]:
        entity = batch[0].entity_id
        ids = [d.external_id for d in batch]
        self.ledger.mark_sent(ids)
        found = self.adapter.find(entity, ids)
        drafts = [f.document_id for f in found.values() if not f.posted]
        rejected: dict[str, str] = {}
        if drafts:
            # A crash between create and post left these in draft: post them now.
            try:
                self.adapter.post(entity, drafts)
            except BusinessRejection:
                rejected.update(self._post_one_by_one(entity, found))
        confirmed = {
            f.external_id: f.document_id for f in found.values() if f.external_id not in rejected
        }
        sent = {d.external_id: d.payload_sha256 for d in batch}
        self.ledger.confirm(confirmed, sent)
        remaining = [d for d in batch if d.external_id not in found]
        created = 0
        if remaining:
            try:
                made = self.adapter.create(remaining)
            except BusinessRejection:
                made, refused = self._create_one_by_one(remaining)
                rejected.update(refused)
            self.ledger.confirm(made, sent)
            created = len(made)
        return created, len(confirmed), rejected

    def _post_one_by_one(self, entity: str, found: Mapping[str, Any]) -> dict[str, str]:
        rejected = {}
        for f in found.values():
            if f.posted:
                continue
            try:
                self.adapter.post(entity, [f.document_id])
            except BusinessRejection as refusal:
                # The draft goes: once corrected, the document is created afresh.
                self.adapter.discard(entity, [f.document_id])
                rejected[f.external_id] = str(refusal)
                self.ledger.reject(f.external_id, str(refusal))
        return rejected

    def _create_one_by_one(
        self, documents: Sequence[ErpDocument]
    ) -> tuple[dict[str, str], dict[str, str]]:
        made: dict[str, str] = {}
        rejected: dict[str, str] = {}
        for doc in documents:
            try:
                made.update(self.adapter.create([doc]))
            except BusinessRejection as refusal:
                # A collision the ERP words as a business error (a localised database
                # message, say) is not a refusal: look before recording one.
                there = self.adapter.find(doc.entity_id, [doc.external_id])
                if doc.external_id in there and there[doc.external_id].posted:
                    made[doc.external_id] = there[doc.external_id].document_id
                    continue
                rejected[doc.external_id] = str(refusal)
                self.ledger.reject(doc.external_id, str(refusal))
        return made, rejected
