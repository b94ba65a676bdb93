"""The faults injected into the landing files, the ingest reason each one must produce,
and the malformed lines built from valid ones (invalid JSON or encoding, missing or
mistyped fields, negative values, unknown event types or customers, times out of range).

Duplicates, late events and too-late re-sends are copies of valid lines: see
``sampledata.arrivals``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl

from sampledata.days import MS_PER_DAY, to_date
from sampledata.events import (
    LINE_SCHEMA,
    T_LLM,
    T_PAY,
    T_SEATS,
    T_STORAGE,
    T_USER,
    TYPE_P,
    TYPES,
    VALUE_FIELD,
    Events,
    line_frame,
)

FAULTS = (
    "none",
    "duplicate_same_day",
    "duplicate_later_day",
    "late_event",
    "invalid_json",
    "invalid_encoding",
    "empty_line",
    "missing_field",
    "mistyped_field",
    "negative_quantity",
    "unknown_event_type",
    "unknown_customer",
    "future_time",
    "too_late",
    "not_an_object",
)
# Quarantine faults injected as fresh lines, ~FAULT_RATE each per month (too_late may instead be
# a re-sent copy of an old event).
LINE_FAULTS = (
    "invalid_json",
    "invalid_encoding",
    "empty_line",
    "missing_field",
    "mistyped_field",
    "negative_quantity",
    "unknown_event_type",
    "unknown_customer",
    "future_time",
    "not_an_object",
)
# Expected reason per fault (mistyped_field is invalid_field for envelope fields and
# invalid_value for the meter's value property; see the manifest's reason column).
FAULT_REASONS: dict[str, list[str]] = {
    "none": [],
    "duplicate_same_day": [],
    "duplicate_later_day": [],
    "late_event": [],
    "invalid_json": ["invalid_json"],
    "invalid_encoding": ["invalid_encoding"],
    "empty_line": ["empty_line"],
    "missing_field": ["missing_field"],
    "mistyped_field": ["invalid_field", "invalid_value"],
    "negative_quantity": ["negative_value"],
    "unknown_event_type": ["unknown_event_type"],
    "unknown_customer": ["unknown_customer"],
    "future_time": ["future_time"],
    "too_late": ["too_late"],
    "not_an_object": ["not_an_object"],
}
UNKNOWN_CUSTOMERS = ("CUST-9001", "CUST-9002")

# Private-use characters stand in for invalid UTF-8 bytes until the file is written.
BAD_BYTES = {"\ue000": b"\xff", "\ue001": b"\xe3", "\ue002": b"\xe2\x82"}
_ENVELOPE = ("specversion", "id", "source", "type", "subject", "time")
_MISTYPE_ENV = (
    "specversion_03",
    "specversion_num",
    "id_num",
    "subject_num",
    "time_no_offset",
    "time_epoch",
    "data_string",
    "data_list",
    "source_num",
)
_MISTYPE_VAL = ("value_text", "value_bool", "value_object", "value_missing", "value_null")
_VALUE_TYPES = (T_LLM, T_STORAGE, T_SEATS, T_PAY)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _fmt_ms(ms: int) -> str:
    d, rem = divmod(int(ms), MS_PER_DAY)
    h, rem = divmod(rem, 3_600_000)
    mi, rem = divmod(rem, 60_000)
    s, f = divmod(rem, 1000)
    return f"{to_date(d).isoformat()}T{h:02d}:{mi:02d}:{s:02d}.{f:03d}Z"


class Faults:
    """Builds the injected fault lines for one landing day."""

    def __init__(self, events: Events, lateness_days: int) -> None:
        self.ev = events
        self.rng = events.rng
        self.lateness = lateness_days

    def build(self, day: int, plan: list[tuple[str, str]]) -> pl.DataFrame:
        rng = self.rng
        specs = []
        for fault, month in plan:
            variant = None
            if fault == "negative_quantity":
                t = _VALUE_TYPES[rng.integers(len(_VALUE_TYPES))]
            elif fault == "mistyped_field":
                if rng.random() < 0.35:
                    variant = _MISTYPE_VAL[rng.integers(len(_MISTYPE_VAL))]
                    t = (*_VALUE_TYPES, T_USER)[rng.integers(len(_VALUE_TYPES) + 1)]
                    if t == T_USER and variant not in ("value_missing", "value_null"):
                        variant = "value_null"
                else:
                    variant = _MISTYPE_ENV[rng.integers(len(_MISTYPE_ENV))]
                    t = int(rng.choice(len(TYPES), p=TYPE_P))
            else:
                t = int(rng.choice(len(TYPES), p=TYPE_P))
            specs.append((t, fault, month, variant))
        specs.sort(key=lambda s: s[0])  # stable: same order as the type-ordered batch
        counts = np.bincount([s[0] for s in specs], minlength=len(TYPES))
        tmpl = self.ev.batch(day, counts)
        rows = []
        for (t, fault, month, variant), rec in zip(specs, tmpl.iter_rows(named=True), strict=True):
            line, reason, fields = self._corrupt(day, fault, variant, t, rec)
            rows.append(
                {
                    "line": line,
                    "key": float(rng.random()),
                    "outcome": "quarantined",
                    "reason": reason,
                    "fault": fault,
                    "meter_count": 0,
                    "gen_month": month,
                    **fields,
                }
            )
        return line_frame(pl.DataFrame(rows, schema=LINE_SCHEMA))

    def _corrupt(
        self, day: int, fault: str, variant: str | None, t: int, rec: dict[str, Any]
    ) -> tuple[str, str, dict[str, str | None]]:
        rng = self.rng
        obj = json.loads(rec["line"])
        unparsed: dict[str, str | None] = {
            "source": None,
            "event_id": None,
            "event_type": None,
            "customer_id": None,
        }

        def fields(o: dict[str, Any]) -> dict[str, str | None]:
            def s(k: str) -> str | None:
                v = o.get(k)
                return v if isinstance(v, str) else None

            return {
                "source": s("source"),
                "event_id": s("id"),
                "event_type": s("type"),
                "customer_id": s("subject"),
            }

        if fault == "invalid_encoding":
            v = int(rng.integers(3))
            if v == 0:
                obj["subject"] = obj["subject"][:7] + "\ue000" + obj["subject"][7:]
            elif v == 1:
                obj["data"]["site"] = "S\ue001o Paulo"
            else:
                obj["source"] = obj["source"] + "\ue002"
            return _dumps(obj), "invalid_encoding", unparsed
        if fault == "empty_line":
            return ("", " ", "  ", "\t", " \t ")[rng.integers(5)], "empty_line", unparsed
        if fault == "invalid_json":
            text = rec["line"]
            v = int(rng.integers(3))
            if v == 0:
                text = text[: int(rng.integers(1, len(text) - 1))]
            elif v == 1:
                text = "INFO ingest " + text
            else:
                text = text.replace('"specversion"', "specversion", 1)
            return text, "invalid_json", unparsed
        if fault == "not_an_object":
            v = int(rng.integers(4))
            text = ("[" + rec["line"] + "]", _dumps(rec["line"]), "null", "42")[v]
            return text, "not_an_object", unparsed
        if fault == "missing_field":
            f = _ENVELOPE[rng.integers(len(_ENVELOPE))]
            v = int(rng.integers(3))
            if v == 0:
                del obj[f]
            else:
                obj[f] = None if v == 1 else ""
            return _dumps(obj), "missing_field", fields(obj)
        if fault == "mistyped_field":
            reason = "invalid_field"
            if variant == "specversion_03":
                obj["specversion"] = "0.3"
            elif variant == "specversion_num":
                obj["specversion"] = 1.0
            elif variant == "id_num":
                obj["id"] = int(rng.integers(1, 10**9))
            elif variant == "subject_num":
                obj["subject"] = int(obj["subject"][5:])
            elif variant == "source_num":
                obj["source"] = 443
            elif variant == "time_no_offset":
                obj["time"] = obj["time"][:-1]
            elif variant == "time_epoch":
                obj["time"] = int(day) * 86_400 + int(rec["ms"]) // 1000
            elif variant == "data_string":
                obj["data"] = _dumps(obj["data"])
            elif variant == "data_list":
                obj["data"] = [obj["data"]]
            else:
                reason = "invalid_value"
                f = VALUE_FIELD[t]
                if variant == "value_text":
                    obj["data"][f] = "n/a"
                elif variant == "value_bool":
                    obj["data"][f] = True
                elif variant == "value_object":
                    obj["data"][f] = {"value": obj["data"][f]}
                elif variant == "value_missing":
                    del obj["data"][f]
                else:
                    obj["data"][f] = None
            return _dumps(obj), reason, fields(obj)
        if fault == "negative_quantity":
            f = VALUE_FIELD[t]
            v = obj["data"][f]
            if t == T_PAY:
                obj["data"][f] = "-" + v
            elif t == T_STORAGE:
                obj["data"][f] = -round(abs(v) + 0.5, 3)
            else:
                obj["data"][f] = -abs(int(v)) - 1
            return _dumps(obj), "negative_value", fields(obj)
        if fault == "unknown_event_type":
            obj["type"] = ("api.request.v2", "llm.embedding", "billing.test", "user.signup")[
                rng.integers(4)
            ]
            return _dumps(obj), "unknown_event_type", fields(obj)
        if fault == "unknown_customer":
            obj["subject"] = UNKNOWN_CUSTOMERS[0] if rng.random() < 0.7 else UNKNOWN_CUSTOMERS[1]
            return _dumps(obj), "unknown_customer", fields(obj)
        if fault == "future_time":
            obj["time"] = _fmt_ms((day + 2) * MS_PER_DAY + int(rng.integers(0, 3 * MS_PER_DAY)))
            return _dumps(obj), "future_time", fields(obj)
        if fault == "too_late":
            back = self.lateness + 1 + int(rng.integers(0, 10))
            obj["time"] = _fmt_ms((day - back) * MS_PER_DAY + int(rng.integers(0, MS_PER_DAY)))
            return _dumps(obj), "too_late", fields(obj)
        raise ValueError(fault)
