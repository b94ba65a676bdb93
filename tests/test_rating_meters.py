"""Meter definitions: valid ones parse, invalid ones fail naming the file, meter and value."""

from __future__ import annotations

import pytest

from rating.errors import ReferenceDataError
from rating.meters import Aggregation, parse_meters


def test_parses_every_aggregation_and_sorts_group_names() -> None:
    meters = parse_meters(
        [
            {"slug": "calls", "event_type": "api.request", "aggregation": "count"},
            {
                "slug": "tokens",
                "event_type": "llm.completion",
                "aggregation": "SUM",
                "value_property": "$.tokens",
                "group_by": {"region": "$.region", "model": "$.model"},
            },
            {
                "slug": "users",
                "event_type": "u",
                "aggregation": "UNIQUE_COUNT",
                "value_property": "$.user.id",
            },
            {"slug": "gb", "event_type": "s", "aggregation": "MAX", "value_property": "$.gb"},
            {
                "slug": "seats",
                "event_type": "t",
                "aggregation": "LATEST",
                "value_property": "$.seats",
            },
        ],
        "meters.yaml",
    )
    assert [m.aggregation for m in meters] == [
        Aggregation.COUNT,
        Aggregation.SUM,
        Aggregation.UNIQUE_COUNT,
        Aggregation.MAX,
        Aggregation.LATEST,
    ]
    assert list(meters[1].group_by) == ["model", "region"]
    assert meters[0].value_property is None


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"slug": "x", "event_type": "e", "aggregation": "AVG"},
            "meters.yaml: meter x.aggregation = 'AVG': expected one of SUM, COUNT, "
            "UNIQUE_COUNT, MAX, LATEST",
        ),
        (
            {"slug": "x", "event_type": "e", "aggregation": "SUM"},
            "meters.yaml: meter x.value_property = None: SUM needs a path like $.field",
        ),
        (
            {"slug": "x", "event_type": "e", "aggregation": "MAX", "value_property": "$..a[*]"},
            "meters.yaml: meter x.value_property = '$..a[*]': MAX needs a path like $.field",
        ),
        (
            {"slug": "x", "event_type": "e", "aggregation": "COUNT", "value_property": "$.a"},
            "meters.yaml: meter x.value_property = '$.a': COUNT meters take none",
        ),
        (
            {"slug": "x", "event_type": "e", "aggregation": "COUNT", "group_by": {"m": "model"}},
            "meters.yaml: meter x.group_by.m = 'model': expected a path like $.field",
        ),
        (
            {"slug": "Bad Slug", "event_type": "e", "aggregation": "COUNT"},
            "meters.yaml: meters[0].slug = 'Bad Slug': expected a lowercase slug",
        ),
        (
            {"slug": "x", "aggregation": "COUNT"},
            "meters.yaml: meter x.event_type = None: expected an event type",
        ),
    ],
)
def test_bad_meter_names_file_key_and_value(record: dict[str, object], message: str) -> None:
    with pytest.raises(ReferenceDataError) as error:
        parse_meters([record], "meters.yaml")
    assert str(error.value) == message


def test_duplicate_slugs_and_empty_lists_are_refused() -> None:
    meter = {"slug": "x", "event_type": "e", "aggregation": "COUNT"}
    with pytest.raises(ReferenceDataError, match="meter slugs must be unique"):
        parse_meters([meter, meter], "meters.yaml")
    with pytest.raises(ReferenceDataError, match="define at least one meter"):
        parse_meters([], "meters.yaml")
