"""Contracts (``contracts.yaml``): who is on which plan, from when to when, with amendments.

Dates are days. ``start_date`` is the first day of service and ``end_date`` the last one
(inclusive, as a contract states its term); a cancellation's ``effective_date`` is the
first day without service. Amendments take effect on their ``effective_date``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from rating.errors import ReferenceDataError
from rating.plans import (
    MODEL_PARAMETERS,
    TIERED,
    Plan,
    RecurringCharge,
    Tier,
    UsageCharge,
    parse_tiers,
    takes_included_units,
    to_decimal,
)

ALIGNMENTS = ("calendar", "anniversary")
AMENDMENTS = ("plan_change", "price_override", "quantity_change", "cancellation")


@dataclass(frozen=True)
class Amendment:
    effective_date: date
    type: str
    plan_id: str | None = None
    charge_id: str | None = None
    quantity: Decimal | None = None
    prices: Mapping[str, Decimal] = field(default_factory=dict)
    tiers: tuple[Tier, ...] = ()


@dataclass(frozen=True)
class Contract:
    contract_id: str
    customer_id: str
    plan_id: str
    start_date: date
    end_date: date | None  # last day of service, inclusive; None while open-ended
    billing_alignment: str
    amendments: tuple[Amendment, ...] = ()
    prepaid_credit: Decimal | None = None
    prepaid_expires_on: date | None = None
    minimum_commitment: Decimal | None = None
    commitment_product_id: str | None = None
    # Co-terming: an added subscription whose periods run from another contract's
    # anniversary (its start day), so both renew together.
    co_term_with: str | None = None
    anniversary: date | None = None

    @property
    def cancelled_from(self) -> date | None:
        """The first day without service by a cancellation, if there is one."""
        days = [a.effective_date for a in self.amendments if a.type == "cancellation"]
        return min(days) if days else None

    @property
    def last_day(self) -> date | None:
        """The last day of service, a cancellation included."""
        cancelled = [a.effective_date for a in self.amendments if a.type == "cancellation"]
        ends = [d for d in (self.end_date, *(c - timedelta(days=1) for c in cancelled)) if d]
        return min(ends) if ends else None

    def plans(self) -> list[str]:
        return [self.plan_id, *(a.plan_id for a in self.amendments if a.plan_id)]


def _date(origin: str, key: str, value: Any, *, optional: bool = False) -> date | None:
    if value is None and optional:
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ReferenceDataError(origin, key, value, "expected a date as YYYY-MM-DD") from None


def _amendment(
    origin: str,
    where: str,
    record: Mapping[str, Any],
    plans: Mapping[str, Plan],
    plan_in_force: Plan,
) -> Amendment:
    kind = record.get("type")
    if kind not in AMENDMENTS:
        raise ReferenceDataError(origin, f"{where}.type", kind, f"expected one of {AMENDMENTS}")
    effective = _date(origin, f"{where}.effective_date", record.get("effective_date"))
    assert effective is not None
    if kind == "cancellation":
        return Amendment(effective_date=effective, type="cancellation")
    if kind == "plan_change":
        plan_id = record.get("plan_id")
        if plan_id not in plans:
            raise ReferenceDataError(origin, f"{where}.plan_id", plan_id, "unknown plan")
        if plans[str(plan_id)].currency != plan_in_force.currency:
            raise ReferenceDataError(
                origin,
                f"{where}.plan_id",
                plan_id,
                f"a plan in {plan_in_force.currency}, the contract's currency",
            )
        return Amendment(effective_date=effective, type="plan_change", plan_id=str(plan_id))
    charge_id = record.get("charge_id")
    charge = plan_in_force.charges.get(str(charge_id))
    if charge is None:
        raise ReferenceDataError(
            origin,
            f"{where}.charge_id",
            charge_id,
            f"no such charge in plan {plan_in_force.plan_id}, in force on {effective}",
        )
    if kind == "quantity_change":
        if not isinstance(charge, RecurringCharge):
            raise ReferenceDataError(
                origin, f"{where}.charge_id", charge_id, "quantities change on recurring charges"
            )
        quantity = to_decimal(origin, f"{where}.quantity", record.get("quantity"))
        return Amendment(
            effective_date=effective, type=kind, charge_id=str(charge_id), quantity=quantity
        )
    # A price override replaces the pricing fields it names, and only those.
    given = {k: v for k, v in record.items() if k not in ("type", "effective_date", "charge_id")}
    if not given:
        raise ReferenceDataError(origin, where, dict(record), "a price override names a price")
    if isinstance(charge, RecurringCharge):
        if set(given) != {"amount"}:
            raise ReferenceDataError(
                origin, where, sorted(given), "a recurring charge's override gives its amount"
            )
        return Amendment(
            effective_date=effective,
            type=kind,
            charge_id=str(charge_id),
            prices={"amount": to_decimal(origin, f"{where}.amount", given["amount"])},
        )
    assert isinstance(charge, UsageCharge)
    required, optional = MODEL_PARAMETERS[charge.model]
    allowed = {*required, *optional, "minimum_amount"}
    if takes_included_units(charge.model, charge.group_by):
        allowed.add("included_units")
    if charge.model in TIERED:
        allowed.add("tiers")
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ReferenceDataError(
            origin,
            f"{where}.{unknown[0]}",
            given[unknown[0]],
            f"charge {charge_id} is priced {charge.model}; it takes {sorted(allowed)}",
        )
    tiers = parse_tiers(origin, where, given["tiers"], charge.model) if "tiers" in given else ()
    prices = {
        k: to_decimal(origin, f"{where}.{k}", v, whole=k == "free_events")
        for k, v in given.items()
        if k != "tiers"
    }
    return Amendment(
        effective_date=effective, type=kind, charge_id=str(charge_id), prices=prices, tiers=tiers
    )


def parse_contracts(
    records: Iterable[Mapping[str, Any]],
    origin: str,
    plans: Mapping[str, Plan],
    customers: Mapping[str, str],
    products: Iterable[str] | None = None,
) -> dict[str, Contract]:
    """Validate contracts against plans, customers (customer id → billing currency) and,
    when given, the product ids a commitment's true-up may book to."""
    known_products = set(products) if products is not None else None
    contracts: dict[str, Contract] = {}
    for index, record in enumerate(records):
        contract_id = record.get("contract_id")
        if not isinstance(contract_id, str) or not contract_id:
            raise ReferenceDataError(
                origin, f"contracts[{index}].contract_id", contract_id, "expected an id"
            )
        where = f"contract {contract_id}"
        if contract_id in contracts:
            raise ReferenceDataError(
                origin, f"{where}.contract_id", contract_id, "ids must be unique"
            )
        customer_id = record.get("customer_id")
        if customer_id not in customers:
            raise ReferenceDataError(
                origin, f"{where}.customer_id", customer_id, "not a customer in customers.csv"
            )
        plan_id = record.get("plan_id")
        if plan_id not in plans:
            raise ReferenceDataError(origin, f"{where}.plan_id", plan_id, "unknown plan")
        plan = plans[str(plan_id)]
        if plan.currency != customers[str(customer_id)]:
            raise ReferenceDataError(
                origin,
                f"{where}.plan_id",
                plan_id,
                f"a plan in {customers[str(customer_id)]}, the customer's billing currency "
                f"(this plan is in {plan.currency})",
            )
        start = _date(origin, f"{where}.start_date", record.get("start_date"))
        end = _date(origin, f"{where}.end_date", record.get("end_date"), optional=True)
        assert start is not None
        if end is not None and end < start:
            raise ReferenceDataError(
                origin, f"{where}.end_date", str(end), f"on or after start_date {start}"
            )
        alignment = record.get("billing_alignment") or "calendar"
        if alignment not in ALIGNMENTS:
            raise ReferenceDataError(
                origin, f"{where}.billing_alignment", alignment, f"expected one of {ALIGNMENTS}"
            )
        amendments: list[Amendment] = []
        in_force = plan
        raw_amendments = record.get("amendments") or []
        # By day; on one day a plan change comes first, so the day's other amendments
        # apply to the new plan.
        ordered = sorted(
            enumerate(raw_amendments),
            key=lambda pair: (
                (str(pair[1].get("effective_date")), pair[1].get("type") != "plan_change")
                if isinstance(pair[1], Mapping)
                else ("", True)
            ),
        )
        overridden: set[tuple[date, str, str]] = set()
        for position, raw in ordered:
            key = f"{where}.amendments[{position}]"
            if not isinstance(raw, Mapping):
                raise ReferenceDataError(origin, key, raw, "expected a mapping")
            if amendments and amendments[-1].type == "cancellation":
                raise ReferenceDataError(
                    origin,
                    f"{key}.effective_date",
                    raw.get("effective_date"),
                    f"the contract is cancelled from {amendments[-1].effective_date}",
                )
            amendment = _amendment(origin, key, raw, plans, in_force)
            # A term can be amended from its first day (a day-one negotiated price); a
            # cancellation on the first day would mean no contract at all.
            too_early = amendment.effective_date < start or (
                amendment.type == "cancellation" and amendment.effective_date == start
            )
            if too_early or (end is not None and amendment.effective_date > end):
                raise ReferenceDataError(
                    origin,
                    f"{key}.effective_date",
                    str(amendment.effective_date),
                    f"on or after start_date {start}"
                    + (f" and up to end_date {end}" if end else ""),
                )
            for name in (*amendment.prices, *(["tiers"] if amendment.tiers else [])):
                mark = (amendment.effective_date, str(amendment.charge_id), name)
                if mark in overridden:
                    raise ReferenceDataError(
                        origin,
                        f"{key}.{name}",
                        str(amendment.effective_date),
                        f"{amendment.charge_id}.{name} is already overridden on that day",
                    )
                overridden.add(mark)
            if amendment.plan_id:
                in_force = plans[amendment.plan_id]
            amendments.append(amendment)
        credit = record.get("prepaid_credit")
        commitment = record.get("minimum_commitment")
        if commitment is not None and (commitment.get("interval") or "month") != "month":
            raise ReferenceDataError(
                origin,
                f"{where}.minimum_commitment.interval",
                commitment.get("interval"),
                "minimum commitments are monthly",
            )
        commitment_product = None
        if commitment:
            commitment_product = commitment.get("product_id")
            if not isinstance(commitment_product, str) or (
                known_products is not None and commitment_product not in known_products
            ):
                raise ReferenceDataError(
                    origin,
                    f"{where}.minimum_commitment.product_id",
                    commitment_product,
                    "the product its true-up books to, one of products.csv",
                )
        co_term = record.get("co_term_with")
        if co_term is not None and not isinstance(co_term, str):
            raise ReferenceDataError(
                origin, f"{where}.co_term_with", co_term, "expected a contract id"
            )
        contracts[contract_id] = Contract(
            contract_id=contract_id,
            customer_id=str(customer_id),
            plan_id=str(plan_id),
            start_date=start,
            end_date=end,
            billing_alignment=str(alignment),
            amendments=tuple(amendments),
            prepaid_credit=(
                to_decimal(origin, f"{where}.prepaid_credit.amount", credit.get("amount"))
                if credit
                else None
            ),
            prepaid_expires_on=(
                _date(
                    origin,
                    f"{where}.prepaid_credit.expires_on",
                    credit.get("expires_on"),
                    optional=True,
                )
                if credit
                else None
            ),
            minimum_commitment=(
                to_decimal(origin, f"{where}.minimum_commitment.amount", commitment.get("amount"))
                if commitment
                else None
            ),
            commitment_product_id=commitment_product,
            co_term_with=co_term,
        )
    contracts = _co_term(origin, contracts)
    _refuse_overlaps(origin, contracts, plans)
    return contracts


def _co_term(origin: str, contracts: Mapping[str, Contract]) -> dict[str, Contract]:
    """Resolve each contract's anniversary: its own start day, or, co-termed, the start day
    of the contract it is co-termed with (of the same customer, not itself co-termed)."""
    resolved: dict[str, Contract] = {}
    for contract_id, contract in contracts.items():
        anniversary = contract.start_date
        if contract.co_term_with is not None:
            key = f"contract {contract_id}.co_term_with"
            parent = contracts.get(contract.co_term_with)
            if parent is None:
                raise ReferenceDataError(origin, key, contract.co_term_with, "unknown contract")
            if parent.customer_id != contract.customer_id or parent.co_term_with is not None:
                raise ReferenceDataError(
                    origin,
                    key,
                    contract.co_term_with,
                    f"a contract of customer {contract.customer_id} that is not co-termed itself",
                )
            anniversary = parent.start_date
        resolved[contract_id] = replace(contract, anniversary=anniversary)
    return resolved


def _refuse_overlaps(
    origin: str, contracts: Mapping[str, Contract], plans: Mapping[str, Plan]
) -> None:
    """Two contracts of one customer in force on the same day may not meter the same usage:
    the events would be billed twice. (An add-on with only recurring fees may overlap.)"""
    by_customer: dict[str, list[Contract]] = {}
    for contract in contracts.values():
        by_customer.setdefault(contract.customer_id, []).append(contract)
    for customer, own in by_customer.items():
        own.sort(key=lambda c: (c.start_date, c.contract_id))
        for i, first in enumerate(own):
            meters_first = {u.meter for p in first.plans() for u in plans[p].usage}
            for second in own[i + 1 :]:
                first_end = first.last_day
                if first_end is not None and second.start_date > first_end:
                    continue
                shared = meters_first & {u.meter for p in second.plans() for u in plans[p].usage}
                if shared:
                    raise ReferenceDataError(
                        origin,
                        f"contract {second.contract_id}.start_date",
                        str(second.start_date),
                        f"overlaps contract {first.contract_id} of customer {customer}, "
                        f"which also meters {sorted(shared)}",
                    )
