"""Meters in the OpenMeter style: which event type feeds which meter, and how it aggregates."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rating.errors import ReferenceDataError


class Aggregation(StrEnum):
    SUM = "SUM"
    COUNT = "COUNT"
    UNIQUE_COUNT = "UNIQUE_COUNT"
    MAX = "MAX"
    LATEST = "LATEST"

    @property
    def numeric(self) -> bool:
        """Whether the meter's value property must be a non-negative number."""
        return self in (Aggregation.SUM, Aggregation.MAX, Aggregation.LATEST)

    @property
    def additive(self) -> bool:
        """Whether daily figures can simply be added up over a billing segment."""
        return self in (Aggregation.SUM, Aggregation.COUNT)


# A JSONPath restricted to object members: what OpenMeter meters use and what DuckDB's
# json_extract takes unchanged. Anything richer (wildcards, filters) is refused up front.
_PATH = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_\-]*)+$")
_SLUG = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Meter:
    slug: str
    event_type: str
    aggregation: Aggregation
    value_property: str | None = None
    group_by: Mapping[str, str] = field(default_factory=dict)


def parse_meters(records: Iterable[Mapping[str, Any]], origin: str) -> list[Meter]:
    """Validate meter definitions; errors name the file, the meter and the value."""
    meters: list[Meter] = []
    seen: set[str] = set()
    for index, record in enumerate(records):
        where = f"meters[{index}]"
        slug = record.get("slug")
        if not isinstance(slug, str) or not _SLUG.match(slug):
            raise ReferenceDataError(origin, f"{where}.slug", slug, "expected a lowercase slug")
        where = f"meter {slug}"
        if slug in seen:
            raise ReferenceDataError(origin, f"{where}.slug", slug, "meter slugs must be unique")
        seen.add(slug)
        event_type = record.get("event_type")
        if not isinstance(event_type, str) or not event_type:
            raise ReferenceDataError(
                origin, f"{where}.event_type", event_type, "expected an event type"
            )
        raw_aggregation = record.get("aggregation")
        try:
            aggregation = Aggregation(str(raw_aggregation).upper())
        except ValueError:
            raise ReferenceDataError(
                origin,
                f"{where}.aggregation",
                raw_aggregation,
                f"expected one of {', '.join(a.value for a in Aggregation)}",
            ) from None
        value_property = record.get("value_property")
        if aggregation is Aggregation.COUNT:
            if value_property not in (None, ""):
                raise ReferenceDataError(
                    origin, f"{where}.value_property", value_property, "COUNT meters take none"
                )
            value_property = None
        elif not isinstance(value_property, str) or not _PATH.match(value_property):
            raise ReferenceDataError(
                origin,
                f"{where}.value_property",
                value_property,
                f"{aggregation.value} needs a path like $.field",
            )
        group_by = record.get("group_by") or {}
        if not isinstance(group_by, Mapping):
            raise ReferenceDataError(
                origin, f"{where}.group_by", group_by, "expected a mapping name → $.field"
            )
        for name, path in group_by.items():
            if not isinstance(name, str) or not _SLUG.match(name):
                raise ReferenceDataError(
                    origin, f"{where}.group_by", name, "group names are lowercase slugs"
                )
            if not isinstance(path, str) or not _PATH.match(path):
                raise ReferenceDataError(
                    origin, f"{where}.group_by.{name}", path, "expected a path like $.field"
                )
        meters.append(
            Meter(
                slug=slug,
                event_type=event_type,
                aggregation=aggregation,
                value_property=value_property,
                group_by=dict(sorted(group_by.items())),
            )
        )
    if not meters:
        raise ReferenceDataError(origin, "meters", [], "define at least one meter")
    return meters
