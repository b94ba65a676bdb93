"""Price plans in USD, EUR, GBP and JPY that together use every pricing model and option,
with prices converted from USD to round amounts in each currency."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from functools import partial
from typing import Any

CURRENCY_DECIMALS = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0}
USD_PER = {"USD": Decimal("1"), "EUR": Decimal("0.9"), "GBP": Decimal("0.8"), "JPY": Decimal("150")}


def money(usd: str, cur: str) -> str:
    """A USD price converted to a round amount in `cur` (JPY without decimals)."""
    v = Decimal(usd) * USD_PER[cur]
    q = Decimal(1).scaleb(-CURRENCY_DECIMALS[cur])
    return str(v.quantize(q, rounding=ROUND_HALF_EVEN))


def unit_price(usd: str, cur: str) -> str:
    """A (possibly sub-cent) unit price converted to `cur`, keeping its precision."""
    d = Decimal(usd)
    v = d * USD_PER[cur]
    places = max(-int(d.as_tuple().exponent), 2)
    return str(v.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN))


def scale(amount: str, factor: str, places: int | None = None) -> str:
    """`amount` times `factor`, kept to `places` decimals (by default, those of `amount`)."""
    d = Decimal(amount)
    if places is None:
        places = max(-int(d.as_tuple().exponent), 0)
    return str((d * Decimal(factor)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN))


def plans() -> list[dict[str, Any]]:
    """The price plans. Together they use every pricing model and option."""

    def rec(
        charge_id: str, product_id: str, amount: str, interval: str, quantity: str | None = None
    ) -> dict[str, Any]:
        r = {
            "charge_id": charge_id,
            "product_id": product_id,
            "amount": amount,
            "interval": interval,
        }
        if quantity is not None:
            r["quantity"] = quantity
        return r

    def use(charge_id: str, meter: str, product_id: str, model: str, **kw: Any) -> dict[str, Any]:
        u: dict[str, Any] = {
            "charge_id": charge_id,
            "meter": meter,
            "product_id": product_id,
            "model": model,
        }
        u.update(kw)
        return u

    def tier(
        up_to: str | None,
        unit_amount: str | None = None,
        flat_amount: str = "0",
        rate: str | None = None,
    ) -> dict[str, Any]:
        t: dict[str, Any] = {"up_to": up_to}
        if rate is not None:
            t["rate"] = rate
        else:
            t["unit_amount"] = unit_amount
        t["flat_amount"] = flat_amount
        return t

    plans: list[dict[str, Any]] = []
    for cur in ("USD", "GBP"):
        m, u = partial(money, cur=cur), partial(unit_price, cur=cur)
        plans.append(
            {
                "plan_id": f"starter-{cur.lower()}",
                "name": f"Starter ({cur})",
                "currency": cur,
                "recurring": [rec("platform", "platform", m("49"), "month")],
                "usage": [
                    use(
                        "api-calls",
                        "api_calls",
                        "api",
                        "per_unit",
                        unit_amount=u("0.0005"),
                        included_units="20000",
                    ),
                    use(
                        "storage",
                        "storage_gb",
                        "storage",
                        "package",
                        package_size="50",
                        package_amount=m("5"),
                        free_units="10",
                    ),
                    use(
                        "active-users",
                        "active_users",
                        "active-users",
                        "per_unit",
                        unit_amount=m("1.5"),
                        included_units="25",
                    ),
                ],
            }
        )
    for cur in ("USD", "EUR", "GBP"):
        m, u = partial(money, cur=cur), partial(unit_price, cur=cur)
        payment = (
            use(
                "payment-fees",
                "payment_volume",
                "payments",
                "graduated_percentage",
                tiers=[tier("100000", rate="2.5"), tier(None, rate="1.9", flat_amount=m("50"))],
            )
            if cur == "GBP"
            else use(
                "payment-fees",
                "payment_volume",
                "payments",
                "percentage",
                rate="2.9",
                fixed_amount=m("0.30"),
                free_events="25",
                min_per_event=m("0.50"),
                max_per_event=m("40"),
            )
        )
        plans.append(
            {
                "plan_id": f"growth-{cur.lower()}",
                "name": f"Growth ({cur})",
                "currency": cur,
                "recurring": [
                    rec("platform", "platform", m("1200"), "month"),
                    rec("seats-fee", "seats", m("25"), "month", quantity="10"),
                ],
                "usage": [
                    use(
                        "api-calls",
                        "api_calls",
                        "api",
                        "graduated",
                        tiers=[
                            tier("100000", u("0.0010")),
                            tier("1000000", u("0.0006")),
                            tier(None, u("0.0003")),
                        ],
                        included_units="10000",
                    ),
                    use(
                        "tokens",
                        "tokens",
                        "ai-tokens",
                        "graduated",
                        group_by=["model"],
                        tiers=[tier("1000000", u("0.000004")), tier(None, u("0.000002"))],
                        minimum_amount=m("100"),
                    ),
                    use(
                        "llm-requests",
                        "llm_requests",
                        "ai-requests",
                        "per_unit",
                        unit_amount=u("0.0010"),
                    ),
                    use(
                        "active-users",
                        "active_users",
                        "active-users",
                        "per_unit",
                        unit_amount=m("2.5"),
                    ),
                    use(
                        "storage",
                        "storage_gb",
                        "storage",
                        "per_unit",
                        unit_amount=m("0.10"),
                        included_units="100",
                    ),
                    payment,
                ],
            }
        )
    for cur in ("USD", "EUR"):
        m, u = partial(money, cur=cur), partial(unit_price, cur=cur)
        payment = (
            use(
                "payment-fees",
                "payment_volume",
                "payments",
                "graduated_percentage",
                tiers=[tier("100000", rate="2.5"), tier(None, rate="1.9", flat_amount=m("50"))],
            )
            if cur == "USD"
            else use(
                "payment-fees",
                "payment_volume",
                "payments",
                "percentage",
                rate="1.4",
                fixed_amount=m("0.25"),
                free_events="100",
                free_amount=m("5000"),
                max_per_event=m("15"),
            )
        )
        plans.append(
            {
                "plan_id": f"scale-{cur.lower()}",
                "name": f"Scale ({cur})",
                "currency": cur,
                "recurring": [
                    rec("platform", "platform", m("36000"), "year"),
                    rec("support", "support", m("750"), "month"),
                ],
                "usage": [
                    use(
                        "api-calls",
                        "api_calls",
                        "api",
                        "volume",
                        tiers=[
                            tier("1000000", u("0.0008")),
                            tier("10000000", u("0.0005"), m("100")),
                            tier(None, u("0.0003"), m("250")),
                        ],
                        minimum_amount=m("500"),
                    ),
                    use(
                        "tokens",
                        "tokens",
                        "ai-tokens",
                        "volume",
                        group_by=["model"],
                        tiers=[tier("5000000", u("0.0000030")), tier(None, u("0.0000015"))],
                    ),
                    use(
                        "llm-requests",
                        "llm_requests",
                        "ai-requests",
                        "package",
                        package_size="1000",
                        package_amount=m("0.80"),
                        free_units="1000",
                    ),
                    use("seats", "seats", "seats", "per_unit", unit_amount=m("18")),
                    use(
                        "storage",
                        "storage_gb",
                        "storage",
                        "per_unit",
                        unit_amount=u("0.08"),
                        included_units="100",
                    ),
                    payment,
                    use(
                        "payment-count",
                        "payments",
                        "payments",
                        "per_unit",
                        unit_amount=u("0.05"),
                        included_units="1000",
                    ),
                ],
            }
        )
    plans.append(
        {
            "plan_id": "growth-jpy",
            "name": "Growth (JPY)",
            "currency": "JPY",
            "recurring": [
                rec("platform", "platform", "180000", "month"),
                rec("seats-fee", "seats", "3000", "month", quantity="10"),
            ],
            "usage": [
                use(
                    "api-calls",
                    "api_calls",
                    "api",
                    "package",
                    package_size="1000",
                    package_amount="150",
                    free_units="10000",
                ),
                use(
                    "tokens",
                    "tokens",
                    "ai-tokens",
                    "package",
                    group_by=["model"],
                    package_size="1000000",
                    package_amount="600",
                    free_units="0",
                    minimum_amount="15000",
                ),
                use(
                    "active-users",
                    "active_users",
                    "active-users",
                    "per_unit",
                    unit_amount="300",
                    included_units="10",
                ),
                use(
                    "payment-fees",
                    "payment_volume",
                    "payments",
                    "percentage",
                    rate="3.6",
                    fixed_amount="40",
                    free_events="10",
                    free_amount="100000",
                    min_per_event="50",
                    max_per_event="5000",
                ),
            ],
        }
    )
    plans.append(
        {
            "plan_id": "scale-jpy",
            "name": "Scale (JPY)",
            "currency": "JPY",
            "recurring": [
                rec("platform", "platform", "5000000", "year"),
                rec("support", "support", "100000", "month"),
            ],
            "usage": [
                use(
                    "api-calls",
                    "api_calls",
                    "api",
                    "volume",
                    tiers=[tier("1000000", "1"), tier(None, "0", "1000000")],
                ),
                use(
                    "llm-requests",
                    "llm_requests",
                    "ai-requests",
                    "graduated",
                    tiers=[tier("10000", "0", "5000"), tier(None, "1")],
                ),
                use(
                    "tokens",
                    "tokens",
                    "ai-tokens",
                    "per_unit",
                    unit_amount="0",
                    minimum_amount="30000",
                ),
                use("seats", "seats", "seats", "per_unit", unit_amount="2500"),
                use(
                    "storage",
                    "storage_gb",
                    "storage",
                    "volume",
                    tiers=[tier("1000", "15"), tier(None, "10", "5000")],
                ),
                use(
                    "payment-fees",
                    "payment_volume",
                    "payments",
                    "graduated_percentage",
                    tiers=[
                        tier("10000000", rate="3.0"),
                        tier(None, rate="2.4", flat_amount="10000"),
                    ],
                ),
            ],
        }
    )
    plans.append(
        {
            "plan_id": "addon-usd",
            "name": "Sandbox add-on (USD)",
            "currency": "USD",
            "recurring": [
                rec("support", "support", "300.00", "month"),
                rec("sandbox", "platform", "1200.00", "year", quantity="2"),
            ],
            "usage": [],
        }
    )
    return plans
