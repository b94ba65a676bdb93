"""Contracts with amendments (plan changes, price overrides, quantity changes,
cancellations), prepaid credit, minimum commitments and co-termed add-ons; and SLA credits.

Contracts are held with days as integers (see ``sampledata.days``); ``contract_records``
turns them into what contracts.yaml holds.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from typing import Any

import numpy as np
import numpy.typing as npt

from sampledata.days import to_date, to_day
from sampledata.plans import CURRENCY_DECIMALS, money, scale
from sampledata.reference import N_CUSTOMERS

UPGRADES = {
    "starter-usd": "growth-usd",
    "growth-usd": "scale-usd",
    "starter-gbp": "growth-gbp",
    "growth-eur": "scale-eur",
    "growth-jpy": "scale-jpy",
}


def draw_contracts(
    rng: np.random.Generator,
    customer_rows: list[dict[str, str]],
    size_w: npt.NDArray[np.float64],
    plan_by_id: dict[str, dict[str, Any]],
    month_days: list[tuple[int, int]],
) -> list[dict[str, Any]]:
    """One contract per customer on a plan that fits its size and currency, then a few
    contracts picked at random for each special case, and the add-ons."""
    first_day, last_day = month_days[0][0], month_days[-1][1]

    def mid_month(lo_day: int = 10, hi_day: int = 20) -> int:
        first, last = month_days[rng.integers(len(month_days))]
        return first + int(rng.integers(lo_day - 1, min(hi_day, last - first + 1)))

    n = N_CUSTOMERS
    order = np.argsort(-size_w, kind="stable")
    size_rank = np.empty(n, dtype=np.int64)
    size_rank[order] = np.arange(n)
    plan_of: list[str] = []
    for i, c in enumerate(customer_rows):
        cur = c["currency"].lower()
        tier = (
            "scale"
            if size_rank[i] < 0.15 * n
            else "growth"
            if size_rank[i] < 0.6 * n
            else "starter"
        )
        pid = f"{tier}-{cur}"
        if pid not in plan_by_id:  # every currency has a growth plan
            pid = f"growth-{cur}"
        plan_of.append(pid)
    contracts: list[dict[str, Any]] = []
    for i, c in enumerate(customer_rows):
        start = first_day - int(rng.integers(30, 700))
        start = to_day(to_date(start).replace(day=1)) if rng.random() < 0.5 else start
        contracts.append(
            {
                "contract_id": f"C-{i + 1:04d}",
                "customer_id": c["customer_id"],
                "plan_id": plan_of[i],
                "start_date": start,
                "end_date": None,
                "billing_alignment": "calendar",
                "amendments": [],
            }
        )
    roles = (
        ["start_mid"] * 4
        + ["end_mid"] * 3
        + ["plan_change"] * 4
        + ["price_override"] * 4
        + ["quantity_change"] * 3
        + ["cancellation"] * 2
        + ["prepaid"] * 4
        + ["commit"] * 4
        + ["anniversary"] * 10
        + ["addon"]
    )
    perm = rng.permutation(n)
    taken: set[int] = set()

    def pick(pred: Callable[[int], bool]) -> int | None:
        for j in perm:
            j = int(j)
            if j not in taken and pred(j):
                taken.add(j)
                return j
        return None

    extra: list[dict[str, Any]] = []
    n_prepaid = 0
    n_override = 0
    for role in roles:
        if role == "quantity_change":
            j = pick(lambda j: plan_of[j].startswith("growth-"))
        elif role == "plan_change":
            j = pick(lambda j: plan_of[j] in UPGRADES)
        elif role == "addon":
            j = pick(lambda j: customer_rows[j]["currency"] == "USD")
        elif role == "price_override":
            j = pick(lambda j: plan_of[j] != "addon-usd")
        else:
            j = pick(lambda j: True)
        if j is None:
            continue
        k = contracts[j]
        cur = plan_by_id[k["plan_id"]]["currency"]
        if role == "start_mid":
            k["start_date"] = mid_month(5, 25)
        elif role == "end_mid":
            k["end_date"] = mid_month(8, 22)
        elif role == "anniversary":
            s = to_date(k["start_date"])
            k["start_date"] = to_day(s.replace(day=int(rng.integers(2, 29))))
            k["billing_alignment"] = "anniversary"
        elif role == "plan_change":
            k["amendments"].append(
                {
                    "effective_date": mid_month(),
                    "type": "plan_change",
                    "plan_id": UPGRADES[k["plan_id"]],
                }
            )
        elif role == "price_override":
            plan = plan_by_id[k["plan_id"]]
            am: dict[str, Any] = {
                "effective_date": mid_month(),
                "type": "price_override",
            }
            kind = n_override % 3
            n_override += 1
            per_unit = [u for u in plan["usage"] if u["model"] == "per_unit"]
            tiered = [u for u in plan["usage"] if u["model"] in ("graduated", "volume")]
            if kind == 0 and per_unit:
                ch = per_unit[0]
                am["charge_id"] = ch["charge_id"]
                am["unit_amount"] = scale(ch["unit_amount"], "0.8")
            elif kind == 1 and tiered:
                ch = tiered[0]
                am["charge_id"] = ch["charge_id"]
                am["tiers"] = [
                    {**t, "unit_amount": scale(t["unit_amount"], "0.75")}
                    for t in deepcopy(ch["tiers"])
                ]
            else:
                ch = plan["recurring"][0]
                am["charge_id"] = ch["charge_id"]
                am["amount"] = scale(ch["amount"], "0.9", CURRENCY_DECIMALS[cur])
            k["amendments"].append(am)
        elif role == "quantity_change":
            k["amendments"].append(
                {
                    "effective_date": mid_month(),
                    "type": "quantity_change",
                    "charge_id": "seats-fee",
                    "quantity": str(int(rng.integers(12, 40))),
                }
            )
        elif role == "cancellation":
            k["amendments"].append({"effective_date": mid_month(), "type": "cancellation"})
        elif role == "prepaid":
            exp = mid_month(12, 18) if n_prepaid == 0 else last_day + 180
            if exp <= first_day:
                exp = last_day + 180
            n_prepaid += 1
            k["prepaid_credit"] = {"amount": money("5000", cur), "expires_on": exp}
        elif role == "commit":
            k["minimum_commitment"] = {
                "amount": money("2500", cur),
                "interval": "month",
                "product_id": "platform",
            }
        elif role == "addon":
            end = last_day + int(rng.integers(100, 300))
            k["end_date"] = end
            extra.append(
                {
                    "contract_id": "",
                    "customer_id": k["customer_id"],
                    "plan_id": "addon-usd",
                    "start_date": mid_month(5, 25),
                    "end_date": end,
                    "billing_alignment": k["billing_alignment"],
                    "co_term_with": k["contract_id"],
                    "amendments": [],
                }
            )
    for e in extra:
        e["contract_id"] = f"C-{len(contracts) + 1:04d}"
        contracts.append(e)
    return contracts


def draw_credits(
    rng: np.random.Generator,
    contracts: list[dict[str, Any]],
    plan_by_id: dict[str, dict[str, Any]],
    month_days: list[tuple[int, int]],
) -> list[dict[str, str]]:
    """Four SLA credits on contracts without amendments."""
    rows: list[dict[str, str]] = []
    cands = [k for k in contracts if k["end_date"] is None and not k["amendments"]]
    months = [to_date(f).strftime("%Y-%m") for f, _ in month_days]
    for i in range(4):
        k = cands[int(rng.integers(len(cands)))]
        cur = plan_by_id[k["plan_id"]]["currency"]
        rows.append(
            {
                "credit_id": f"CR-{i + 1:04d}",
                "contract_id": k["contract_id"],
                "period": months[int(rng.integers(len(months)))],
                "amount": money(str(int(rng.choice([50, 100, 150, 250]))), cur),
                "currency": cur,
                "product_id": "api",
                "reason": "SLA breach: monthly API availability below 99.9%",
            }
        )
    return rows


def contract_records(contracts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The contracts as contracts.yaml holds them: dates, amendments in date order."""
    out: list[dict[str, Any]] = []
    for k in contracts:
        o: dict[str, Any] = {
            "contract_id": k["contract_id"],
            "customer_id": k["customer_id"],
            "plan_id": k["plan_id"],
            "start_date": to_date(k["start_date"]),
            "end_date": None if k["end_date"] is None else to_date(k["end_date"]),
            "billing_alignment": k["billing_alignment"],
        }
        if "co_term_with" in k:
            o["co_term_with"] = k["co_term_with"]
        if "prepaid_credit" in k:
            p = k["prepaid_credit"]
            o["prepaid_credit"] = {"amount": p["amount"], "expires_on": to_date(p["expires_on"])}
        if "minimum_commitment" in k:
            o["minimum_commitment"] = dict(k["minimum_commitment"])
        o["amendments"] = [
            {
                "effective_date": to_date(a["effective_date"]),
                **{x: y for x, y in a.items() if x != "effective_date"},
            }
            for a in sorted(k["amendments"], key=lambda a: a["effective_date"])
        ]
        out.append(o)
    return out
