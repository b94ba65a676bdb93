"""Price plans (``plans.yaml``): recurring and usage charges, validated on load.

Every number is a decimal string. Errors name the file, the plan, the charge and the value,
and say what was expected, so a price book can be fixed without reading code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from rating.currency import minor_units
from rating.errors import ReferenceDataError
from rating.meters import Meter

MODELS = ("per_unit", "graduated", "volume", "package", "percentage", "graduated_percentage")
TIERED = ("graduated", "volume", "graduated_percentage")
INTERVALS = ("month", "year")
# Parameters each model reads (besides tiers); "required" ones must be given.
MODEL_PARAMETERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "per_unit": (("unit_amount",), ()),
    "graduated": ((), ()),
    "volume": ((), ()),
    "package": (("package_size", "package_amount"), ("free_units",)),
    "percentage": (
        ("rate",),
        ("fixed_amount", "free_events", "free_amount", "min_per_event", "max_per_event"),
    ),
    "graduated_percentage": ((), ()),
}
PRICE_FIELDS = frozenset(
    {p for required, optional in MODEL_PARAMETERS.values() for p in (*required, *optional)}
)
_SCALE = Decimal("1e-12")


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None
    unit_amount: Decimal | None = None
    flat_amount: Decimal | None = None
    rate: Decimal | None = None


@dataclass(frozen=True)
class UsageCharge:
    charge_id: str
    meter: str
    product_id: str
    model: str
    parameters: Mapping[str, Decimal]
    tiers: tuple[Tier, ...] = ()
    included_units: Decimal = Decimal(0)
    minimum_amount: Decimal = Decimal(0)
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecurringCharge:
    charge_id: str
    product_id: str
    amount: Decimal
    interval: str
    quantity: Decimal = Decimal(1)


@dataclass(frozen=True)
class Plan:
    plan_id: str
    currency: str
    recurring: tuple[RecurringCharge, ...]
    usage: tuple[UsageCharge, ...]
    name: str = ""
    charges: Mapping[str, RecurringCharge | UsageCharge] = field(default_factory=dict)


def takes_included_units(model: str, group_by: Sequence[str]) -> bool:
    """Included units come off a charge's own quantity: not per group (which group would
    they come off first?), and not for percentages, whose allowance is free_amount."""
    return model != "percentage" and not group_by


def to_decimal(
    origin: str, key: str, value: Any, *, positive: bool = False, whole: bool = False
) -> Decimal:
    """A decimal string (or integer) → Decimal with at most 12 places, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ReferenceDataError(origin, key, value, 'expected a decimal string like "12.50"')
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ReferenceDataError(origin, key, value, "expected a decimal number") from None
    if not number.is_finite():
        raise ReferenceDataError(origin, key, value, "expected a finite decimal number")
    if number != number.quantize(_SCALE):
        raise ReferenceDataError(origin, key, value, "at most 12 decimal places")
    if number < 0 or (positive and number == 0):
        raise ReferenceDataError(
            origin, key, value, "expected a number above 0" if positive else "expected 0 or more"
        )
    if whole and number != number.to_integral_value():
        raise ReferenceDataError(origin, key, value, "expected a whole number")
    return number


def parse_tiers(origin: str, where: str, records: Any, model: str) -> tuple[Tier, ...]:
    """Tiers in Stripe's ``up_to`` notation: increasing, and only the last one open."""
    if not isinstance(records, list) or not records:
        raise ReferenceDataError(origin, f"{where}.tiers", records, f"{model} needs tiers")
    tiers = []
    previous: Decimal | None = Decimal(0)
    for index, record in enumerate(records, start=1):
        key = f"{where}.tiers[{index}]"
        if not isinstance(record, Mapping):
            raise ReferenceDataError(origin, key, record, "expected a mapping")
        if previous is None:
            raise ReferenceDataError(
                origin,
                f"{key}.up_to",
                record.get("up_to"),
                f"tier {index - 1} is open (up_to: null), so no tier may follow it",
            )
        raw_up_to = record.get("up_to")
        up_to = None if raw_up_to is None else to_decimal(origin, f"{key}.up_to", raw_up_to)
        if up_to is not None and up_to <= previous:
            raise ReferenceDataError(
                origin,
                f"{key}.up_to",
                raw_up_to,
                f"up_to must increase: expected more than {previous}",
            )
        values = {
            name: to_decimal(origin, f"{key}.{name}", record[name])
            for name in ("unit_amount", "flat_amount", "rate")
            if record.get(name) is not None
        }
        if model == "graduated_percentage" and "rate" not in values:
            raise ReferenceDataError(origin, f"{key}.rate", None, "each tier needs a rate")
        if model != "graduated_percentage" and not {"unit_amount", "flat_amount"} & set(values):
            raise ReferenceDataError(
                origin, key, dict(record), "each tier needs unit_amount or flat_amount"
            )
        tiers.append(Tier(up_to=up_to, **values))
        previous = up_to
    if tiers[-1].up_to is not None:
        raise ReferenceDataError(
            origin,
            f"{where}.tiers[{len(tiers)}].up_to",
            str(tiers[-1].up_to),
            "the last tier must be open (up_to: null)",
        )
    return tuple(tiers)


def _usage_charge(
    origin: str,
    where: str,
    record: Mapping[str, Any],
    meters: Mapping[str, Meter],
    products: set[str] | None,
) -> UsageCharge:
    charge_id = str(record.get("charge_id") or "")
    meter = record.get("meter")
    if meter not in meters:
        raise ReferenceDataError(
            origin, f"{where}.meter", meter, f"unknown meter; meters.yaml has {sorted(meters)}"
        )
    model = record.get("model")
    if model not in MODELS:
        raise ReferenceDataError(origin, f"{where}.model", model, f"expected one of {MODELS}")
    required, optional = MODEL_PARAMETERS[str(model)]
    parameters = {}
    for name in (*required, *optional):
        if record.get(name) is None:
            if name in required:
                raise ReferenceDataError(origin, f"{where}.{name}", None, f"{model} needs it")
            continue
        parameters[name] = to_decimal(
            origin,
            f"{where}.{name}",
            record[name],
            positive=name == "package_size",
            whole=name == "free_events",
        )
    unexpected = sorted(k for k in record if k in PRICE_FIELDS and k not in (*required, *optional))
    if unexpected:
        raise ReferenceDataError(
            origin,
            f"{where}.{unexpected[0]}",
            record[unexpected[0]],
            f"{model} takes no such field",
        )
    if {"min_per_event", "max_per_event"} <= set(parameters) and (
        parameters["min_per_event"] > parameters["max_per_event"]
    ):
        raise ReferenceDataError(
            origin,
            f"{where}.min_per_event",
            str(parameters["min_per_event"]),
            f"must not exceed max_per_event {parameters['max_per_event']}",
        )
    tiers = parse_tiers(origin, where, record.get("tiers"), str(model)) if model in TIERED else ()
    if model not in TIERED and record.get("tiers") is not None:
        raise ReferenceDataError(origin, f"{where}.tiers", "…", f"{model} takes no tiers")
    group_by = record.get("group_by") or []
    if not isinstance(group_by, list) or any(
        g not in meters[str(meter)].group_by for g in group_by
    ):
        raise ReferenceDataError(
            origin,
            f"{where}.group_by",
            group_by,
            f"groups of meter {meter}: {sorted(meters[str(meter)].group_by)}",
        )
    product_id = str(record.get("product_id") or "")
    if products is not None and product_id not in products:
        raise ReferenceDataError(origin, f"{where}.product_id", product_id, "unknown product")
    included = record.get("included_units")
    if included not in (None, "0") and not takes_included_units(str(model), tuple(group_by)):
        raise ReferenceDataError(
            origin,
            f"{where}.included_units",
            included,
            "a percentage charge's allowance is free_amount or free_events"
            if model == "percentage"
            else "a charge priced per group takes no included units",
        )
    aggregation = meters[str(meter)].aggregation
    if model in ("percentage", "graduated_percentage") and aggregation != "SUM":
        raise ReferenceDataError(
            origin,
            f"{where}.meter",
            meter,
            f"{model} prices an amount: a SUM meter, not {aggregation.value}",
        )
    return UsageCharge(
        charge_id=charge_id,
        meter=str(meter),
        product_id=product_id,
        model=str(model),
        parameters=parameters,
        tiers=tiers,
        included_units=to_decimal(
            origin, f"{where}.included_units", record.get("included_units", "0")
        ),
        minimum_amount=to_decimal(
            origin, f"{where}.minimum_amount", record.get("minimum_amount", "0")
        ),
        group_by=tuple(group_by),
    )


def _recurring_charge(
    origin: str, where: str, record: Mapping[str, Any], products: set[str] | None
) -> RecurringCharge:
    interval = record.get("interval")
    if interval not in INTERVALS:
        raise ReferenceDataError(origin, f"{where}.interval", interval, f"expected {INTERVALS}")
    product_id = str(record.get("product_id") or "")
    if products is not None and product_id not in products:
        raise ReferenceDataError(origin, f"{where}.product_id", product_id, "unknown product")
    return RecurringCharge(
        charge_id=str(record.get("charge_id") or ""),
        product_id=product_id,
        amount=to_decimal(origin, f"{where}.amount", record.get("amount")),
        interval=str(interval),
        quantity=to_decimal(origin, f"{where}.quantity", record.get("quantity", "1")),
    )


def parse_plans(
    records: Iterable[Mapping[str, Any]],
    origin: str,
    meters: Sequence[Meter],
    products: Iterable[str] | None = None,
) -> dict[str, Plan]:
    """Validate every plan; the first problem found is raised with its location."""
    by_slug = {m.slug: m for m in meters}
    known_products = set(products) if products is not None else None
    plans: dict[str, Plan] = {}
    for index, record in enumerate(records):
        plan_id = record.get("plan_id")
        if not isinstance(plan_id, str) or not plan_id:
            raise ReferenceDataError(origin, f"plans[{index}].plan_id", plan_id, "expected an id")
        where = f"plan {plan_id}"
        if plan_id in plans:
            raise ReferenceDataError(origin, f"{where}.plan_id", plan_id, "plan ids must be unique")
        currency = record.get("currency")
        try:
            minor_units(str(currency))
        except ValueError as exc:
            raise ReferenceDataError(origin, f"{where}.currency", currency, str(exc)) from None
        charges: dict[str, RecurringCharge | UsageCharge] = {}
        recurring = []
        usage = []
        for kind, items in (("recurring", record.get("recurring")), ("usage", record.get("usage"))):
            if items is None:
                continue
            if not isinstance(items, list):
                raise ReferenceDataError(origin, f"{where}.{kind}", items, "expected a list")
            for item in items:
                charge_id = item.get("charge_id") if isinstance(item, Mapping) else None
                key = f"{where}.{kind}[{charge_id}]"
                if not isinstance(charge_id, str) or not charge_id:
                    raise ReferenceDataError(origin, key, item, "each charge needs a charge_id")
                if charge_id in charges:
                    raise ReferenceDataError(
                        origin, key, charge_id, "charge ids must be unique within a plan"
                    )
                charge: RecurringCharge | UsageCharge
                if kind == "recurring":
                    charge = _recurring_charge(origin, key, item, known_products)
                    recurring.append(charge)
                else:
                    charge = _usage_charge(origin, key, item, by_slug, known_products)
                    usage.append(charge)
                charges[charge_id] = charge
        plans[plan_id] = Plan(
            plan_id=plan_id,
            currency=str(currency),
            recurring=tuple(recurring),
            usage=tuple(usage),
            name=str(record.get("name") or ""),
            charges=charges,
        )
    return plans
