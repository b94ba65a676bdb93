"""The Tryton adapter: our documents as posted ``account.move`` records, over JSON-RPC.

- One company per legal entity, found by its party code (= entity id); accounts by
  (company, code); the period by date; our journal by code ``MC`` (see
  ``tryton_provision``).
- The external id is the move's ``description``; a unique index on (company,
  description) in the ERP's database makes a second create fail instead of duplicating.
- A line is in the company's currency (our functional amounts); a journal in another
  currency carries it as the line's second currency and amount.
- Customers are parties with code = customer id, tagged with categories ``entity:<id>``
  and ``currency:<code>``; a party whose tags disagree with ours is reported, never
  changed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl

from rating.currency import MINOR_UNITS
from resources.erp.adapter import (
    AlreadyExists,
    BusinessRejection,
    Customer,
    ErpDocument,
    Found,
    TechnicalFault,
)
from resources.erp.tryton_provision import EXTERNAL_ID_FIELD, JOURNAL_CODE
from resources.erp.tryton_rpc import (
    TrytonClient,
    TrytonRequestError,
    TrytonServerError,
    TrytonTransportError,
    TrytonUserError,
)
from resources.http import RetryPolicy, rate_limiter, session

_CHUNK = 500  # ids per search domain


def _quantize(value: Any, currency: str) -> Decimal:
    if currency not in MINOR_UNITS:
        raise BusinessRejection(f"currency {currency} has no known minor unit")
    return Decimal(value).quantize(Decimal(1).scaleb(-MINOR_UNITS[currency]))


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@contextmanager
def _faults(what: str) -> Iterator[None]:
    """Tryton's errors as the publisher's: business, technical or a collision."""
    try:
        yield
    except TrytonUserError as error:
        raise BusinessRejection(error.message) from error
    except TrytonServerError as error:
        if error.unique_violation:
            raise AlreadyExists(f"{what}: {error.message}") from error
        raise BusinessRejection(f"{what}: ERP error: {error.message}") from error
    except TrytonRequestError as error:
        # The server refused the request itself (a body too large, say): sending the
        # documents one at a time narrows it down to the one it will not take.
        raise BusinessRejection(f"{what}: {error}") from error
    except TrytonTransportError as error:
        raise TechnicalFault(str(error)) from error


class TrytonAdapter:
    max_lines = 100_000  # Tryton has no line limit; keep a move reviewable
    single_date = True  # a move has one date

    def __init__(
        self,
        url: str,
        database: str,
        login: str,
        password: str,
        *,
        rate_per_second: float = 20.0,
        batch_size: int = 100,
        pool_size: int = 2,
        timeout_seconds: float = 120.0,
        policy: RetryPolicy | None = None,
    ) -> None:
        # The ERP database, not the URL: the same ledger holds whichever address (a proxy,
        # a load balancer) reaches it.
        self.target = f"tryton:{database}"
        self.batch_size = batch_size
        self._url, self._database, self._login = url, database, login
        self._password = password
        self._policy = policy or RetryPolicy(timeout_seconds=timeout_seconds)
        self._limiter = rate_limiter(rate_per_second)
        self._pool_size = pool_size
        self._local = threading.local()
        self._lock = threading.Lock()
        self._companies: dict[str, dict[str, Any]] = {}
        self._accounts: dict[tuple[int, str], dict[str, Any]] = {}
        self._periods: dict[int, list[dict[str, Any]]] = {}
        self._currencies: dict[str, int] = {}
        self._journal: int | None = None
        self._parties: dict[str, int] = {}

    # -- plumbing ------------------------------------------------------------------

    @property
    def client(self) -> TrytonClient:
        """One client (session, login) per thread; the rate limit is shared."""
        client = getattr(self._local, "client", None)
        if client is None:
            http = session(
                self._policy, limiter=self._limiter, bucket=self.target, pool_size=self._pool_size
            )
            client = TrytonClient(
                self._url, self._database, self._login, self._password, session=http,
                timeout=self._policy.timeout_seconds,
            )  # fmt: skip
            self._local.client = client
        return client

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.session.close()

    def company(self, entity_id: str) -> dict[str, Any]:
        with self._lock:
            known = self._companies.get(entity_id)
        if known is not None:
            return known
        with _faults(f"company of {entity_id}"):
            rows = self.client.search_read(
                "company.company",
                [("party.code", "=", entity_id)],
                ["id", "currency.code", "party.code"],
            )
        if not rows:
            raise BusinessRejection(
                f"the ERP has no company for entity {entity_id} (a company whose party code "
                f"is {entity_id})"
            )
        company = {"id": rows[0]["id"], "currency": rows[0]["currency."]["code"]}
        with self._lock:
            self._companies[entity_id] = company
        return company

    def _context(self, company_id: int) -> dict[str, Any]:
        return {"company": company_id, "companies": [company_id]}

    def _journal_id(self) -> int:
        if self._journal is None:
            with _faults("journal"):
                rows = self.client.search_read(
                    "account.journal", [("code", "=", JOURNAL_CODE)], ["id"]
                )
            if not rows:
                raise BusinessRejection(f"the ERP has no journal with code {JOURNAL_CODE}")
            self._journal = int(rows[0]["id"])
        return self._journal

    def _account_ids(self, company_id: int, codes: set[str]) -> dict[str, dict[str, Any]]:
        missing = sorted(c for c in codes if (company_id, c) not in self._accounts)
        if missing:
            with _faults("accounts"):
                rows = self.client.search_read(
                    "account.account",
                    [("company", "=", company_id), ("code", "in", missing), ("closed", "=", False)],
                    ["id", "code", "party_required"],
                    context=self._context(company_id),
                )
            with self._lock:
                for row in rows:
                    self._accounts[(company_id, row["code"])] = row
        return {
            c: self._accounts[(company_id, c)] for c in codes if (company_id, c) in self._accounts
        }

    def _period_id(self, company_id: int, day: date) -> int | None:
        periods = self._periods.get(company_id)
        if periods is None:
            with _faults("periods"):
                periods = self.client.search_read(
                    "account.period",
                    [("company", "=", company_id), ("type", "=", "standard")],
                    ["id", "start_date", "end_date", "state"],
                    context=self._context(company_id),
                )
            with self._lock:
                self._periods[company_id] = periods
        for period in periods:
            if period["start_date"] <= day <= period["end_date"]:
                return int(period["id"])
        return None

    def _currency_ids(self, codes: set[str]) -> dict[str, int]:
        missing = sorted(c for c in codes if c not in self._currencies)
        if missing:
            with _faults("currencies"):
                rows = self.client.search_read(
                    "currency.currency", [("code", "in", missing)], ["id", "code"]
                )
            with self._lock:
                self._currencies.update({r["code"]: int(r["id"]) for r in rows})
        return {c: self._currencies[c] for c in codes if c in self._currencies}

    def _resolve_parties(self, documents: Sequence[ErpDocument]) -> None:
        """Party ids of every customer the documents name, in one search per 500 (ids
        never change, so they are kept)."""
        codes = {
            str(line["customer_id"]) for d in documents for line in d.lines if line["customer_id"]
        }
        missing = sorted(codes - set(self._parties))
        for chunk in _chunks(missing):
            with _faults("parties"):
                rows = self.client.search_read(
                    "party.party", [("code", "in", list(chunk))], ["id", "code"]
                )
            with self._lock:
                self._parties.update({r["code"]: int(r["id"]) for r in rows})

    # -- the adapter interface -----------------------------------------------------

    def find(self, entity_id: str, external_ids: Sequence[str]) -> dict[str, Found]:
        company_id = self.company(entity_id)["id"]
        found: dict[str, Found] = {}
        for chunk in _chunks(list(external_ids)):
            with _faults("lookup"):
                rows = self.client.search_read(
                    "account.move",
                    [
                        ("company", "=", company_id),
                        ("journal", "=", self._journal_id()),
                        (EXTERNAL_ID_FIELD, "in", list(chunk)),
                        # Tryton's own cancellation copies keep the description.
                        ("origin", "=", None),
                    ],
                    ["id", EXTERNAL_ID_FIELD, "state"],
                    context=self._context(company_id),
                )
            for row in rows:
                external_id = row[EXTERNAL_ID_FIELD]
                found[external_id] = Found(external_id, str(row["id"]), row["state"] == "posted")
        return found

    def _move(self, doc: ErpDocument, company: Mapping[str, Any]) -> dict[str, Any]:
        company_id, functional = int(company["id"]), str(company["currency"])
        if functional != doc.functional_currency:
            raise BusinessRejection(
                f"{doc.external_id}: entity {doc.entity_id} keeps its books in "
                f"{doc.functional_currency}, its ERP company in {functional}"
            )
        accounts = self._account_ids(company_id, {str(line["account"]) for line in doc.lines})
        unknown = sorted({str(line["account"]) for line in doc.lines} - set(accounts))
        if unknown:
            raise BusinessRejection(
                f"{doc.external_id}: account(s) {', '.join(unknown)} not found (or closed) in "
                f"the ERP company of {doc.entity_id}"
            )
        period_id = self._period_id(company_id, doc.accounting_date)
        if period_id is None:
            raise BusinessRejection(
                f"{doc.external_id}: the ERP company of {doc.entity_id} has no period "
                f"for {doc.accounting_date}"
            )
        foreign = doc.currency != functional
        second = self._currency_ids({doc.currency})[doc.currency] if foreign else None
        parties = self._parties
        lines = []
        for line in doc.lines:
            account = accounts[str(line["account"])]
            values: dict[str, Any] = {
                "account": account["id"],
                "debit": _quantize(line["functional_debit"], functional),
                "credit": _quantize(line["functional_credit"], functional),
                "description": (line["memo"] or "")[:256],
            }
            if account["party_required"]:
                party = parties.get(str(line["customer_id"] or ""))
                if party is None:
                    raise BusinessRejection(
                        f"{doc.external_id}: line {line['line_no']} on account "
                        f"{line['account']} needs a customer the ERP knows "
                        f"({line['customer_id'] or 'none on the line'})"
                    )
                values["party"] = party
            if foreign:
                amount = _quantize(line["debit"], doc.currency) - _quantize(
                    line["credit"], doc.currency
                )
                values["second_currency"] = second
                values["amount_second_currency"] = amount
            lines.append(values)
        return {
            "company": company_id,
            "journal": self._journal_id(),
            "period": period_id,
            "date": doc.accounting_date,
            EXTERNAL_ID_FIELD: doc.external_id,
            "lines": [["create", lines]],
        }

    def create(self, documents: Sequence[ErpDocument]) -> dict[str, str]:
        entities = {d.entity_id for d in documents}
        if len(entities) != 1:
            raise ValueError(f"one entity per create call, got {sorted(entities)}")
        company = self.company(documents[0].entity_id)
        context = self._context(int(company["id"]))
        self._resolve_parties(documents)
        moves = [self._move(doc, company) for doc in documents]
        with _faults(f"create {documents[0].external_id}…"):
            ids = self.client.create("account.move", moves, context=context)
        try:
            self._post([int(i) for i in ids], context)
        except BusinessRejection:
            # Leave nothing half-done behind: the drafts go, the rejection stands.
            self.discard(documents[0].entity_id, [str(i) for i in ids])
            raise
        return {doc.external_id: str(i) for doc, i in zip(documents, ids, strict=True)}

    def _states(self, ids: Sequence[int], context: Mapping[str, Any]) -> dict[int, str]:
        with _faults("move states"):
            rows = self.client.read("account.move", list(ids), ["id", "state"], context=context)
        return {int(r["id"]): r["state"] for r in rows}

    def _post(self, ids: Sequence[int], context: Mapping[str, Any]) -> None:
        """Post moves; moves already posted are fine. A post whose answer was lost and
        that was sent again finds them posted, and Tryton refuses to post a posted move
        ("cannot modify posted move"): that is the outcome we wanted, not a rejection."""
        try:
            with _faults("post"):
                self.client.execute("account.move", "post", list(ids), context=context)
        except BusinessRejection:
            states = self._states(ids, context)
            drafts = [i for i in ids if states.get(i) == "draft"]
            if not drafts:
                return
            if len(drafts) == len(ids):
                raise
            self._post(drafts, context)

    def post(self, entity_id: str, document_ids: Sequence[str]) -> None:
        context = self._context(int(self.company(entity_id)["id"]))
        self._post([int(i) for i in document_ids], context)

    def discard(self, entity_id: str, document_ids: Sequence[str]) -> None:
        """Delete the drafts among these moves (a posted one is never deleted)."""
        context = self._context(int(self.company(entity_id)["id"]))
        states = self._states([int(i) for i in document_ids], context)
        drafts = [i for i, state in sorted(states.items()) if state == "draft"]
        if drafts:
            with _faults("delete drafts"):
                self.client.execute("account.move", "delete", drafts, context=context)

    def sync_customers(self, customers: Sequence[Customer]) -> dict[str, str]:
        wanted = {c.customer_id: c for c in customers}
        tags = sorted(
            {f"entity:{c.entity_id}" for c in customers}
            | {f"currency:{c.currency}" for c in customers}
        )
        categories = self._categories(tags)
        names = {v: k for k, v in categories.items()}
        conflicts: dict[str, str] = {}
        existing: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(sorted(wanted)):
            with _faults("customers"):
                rows = self.client.search_read(
                    "party.party", [("code", "in", list(chunk))], ["id", "code", "categories"]
                )
            existing.update({r["code"]: r for r in rows})
        if any(existing.values()):
            every = sorted({i for r in existing.values() for i in r["categories"]} - set(names))
            if every:
                with _faults("categories"):
                    names.update(
                        {int(r["id"]): r["name"] for r in self.client.read(
                            "party.category", every, ["id", "name"]
                        )}
                    )  # fmt: skip
        to_tag: list[tuple[int, list[int]]] = []
        for code, row in sorted(existing.items()):
            ours = wanted[code]
            theirs = [names.get(int(i), "") for i in row["categories"]]
            for prefix, value in (("entity", ours.entity_id), ("currency", ours.currency)):
                recorded = sorted(t.split(":", 1)[1] for t in theirs if t.startswith(f"{prefix}:"))
                if recorded and recorded != [value]:
                    conflicts[code] = (
                        f"the ERP records {prefix} {', '.join(recorded)}, customers.csv {value}"
                    )
            if code not in conflicts:
                missing = [
                    categories[t]
                    for t in (f"entity:{ours.entity_id}", f"currency:{ours.currency}")
                    if t not in theirs
                ]
                if missing:
                    to_tag.append((int(row["id"]), missing))
        if to_tag:
            with _faults("tag customers"):
                for party_id, missing in to_tag:
                    self.client.call(
                        "model.party.party.write",
                        [party_id],
                        {"categories": [["add", missing]]},
                    )
        new = [
            {
                "code": c.customer_id,
                "name": c.name,
                "categories": [
                    [
                        "add",
                        [categories[f"entity:{c.entity_id}"], categories[f"currency:{c.currency}"]],
                    ]
                ],
            }
            for code, c in sorted(wanted.items())
            if code not in existing
        ]
        for chunk in _chunks(new, 200):
            try:
                with _faults("create customers"):
                    self.client.create("party.party", list(chunk))
            except (AlreadyExists, BusinessRejection):
                # Some were created meanwhile (a replayed request, another publisher):
                # Tryton refuses the batch on its unique party code. One at a time, then;
                # one that still cannot be created holds its documents.
                for values in chunk:
                    code = values["code"]
                    with _faults("customers"):
                        there = self.client.search_read(
                            "party.party", [("code", "=", code)], ["id"]
                        )
                    if there:
                        continue
                    try:
                        with _faults("create customer"):
                            self.client.create("party.party", [values])
                    except (AlreadyExists, BusinessRejection) as refusal:
                        conflicts[code] = f"the ERP refused to create it: {refusal}"
        return conflicts

    def _categories(self, names: Sequence[str]) -> dict[str, int]:
        with _faults("categories"):
            rows = self.client.search_read(
                "party.category", [("name", "in", list(names))], ["id", "name"]
            )
        known = {r["name"]: int(r["id"]) for r in rows}
        missing = [n for n in names if n not in known]
        if missing:
            # Master data the ERP's administrator owns (tryton_provision creates them).
            raise BusinessRejection(
                f"the ERP has no party categor{'y' if len(missing) == 1 else 'ies'} "
                f"{', '.join(missing)} to tag customers with: create them in the ERP"
            )
        return known

    def balances(self, period: str, entity_ids: Sequence[str]) -> pl.DataFrame:
        year, month = (int(p) for p in period.split("-"))
        day = date(year, month, 1)
        rows: list[dict[str, Any]] = []
        for entity_id in entity_ids:
            try:
                company = self.company(entity_id)
            except BusinessRejection:
                continue  # no company, nothing booked: its documents show as not sent
            company_id = int(company["id"])
            period_id = self._period_id(company_id, day)
            if period_id is None:
                continue
            with _faults("read back"):
                lines = self.client.search_read(
                    "account.move.line",
                    [
                        ("move.company", "=", company_id),
                        ("move.period", "=", period_id),
                        ("move.journal", "=", self._journal_id()),
                        ("move.state", "=", "posted"),
                    ],
                    ["account.code", "debit", "credit", "amount_second_currency",
                     "second_currency.code"],
                    context=self._context(company_id),
                )  # fmt: skip
            rows.extend(
                {
                    "entity_id": entity_id,
                    "account": line["account."]["code"],
                    "currency": (line.get("second_currency.") or {}).get("code")
                    or company["currency"],
                    "amount": (
                        line["amount_second_currency"]
                        if line.get("second_currency.")
                        else line["debit"] - line["credit"]
                    ),
                    "functional_amount": line["debit"] - line["credit"],
                }
                for line in lines
            )
        decimal = pl.Decimal(38, 12)
        frame = pl.DataFrame(
            rows,
            schema={
                "entity_id": pl.String,
                "account": pl.String,
                "currency": pl.String,
                "amount": decimal,
                "functional_amount": decimal,
            },
        )
        return frame.group_by("entity_id", "account", "currency").agg(
            pl.col("amount").sum().cast(decimal), pl.col("functional_amount").sum().cast(decimal)
        )
