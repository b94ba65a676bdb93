"""The landing files as a source asset: observed day by day by the landing sensor, late
days caught by a freshness check at the deadline, noisy days by the quarantine-rate check."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime

import dagster as dg
from dagster._core.test_utils import freeze_time

from assets.ingest import ingest_landing_day
from assets.landing import LANDING_FILES, landing_files, landing_freshness_checks
from checks import names
from dagster_project.sensors import RANGE_END, RANGE_START, landing_files_sensor
from tests.conftest import LandFn, event

DAY1, DAY2 = date(2026, 9, 1), date(2026, 9, 2)


def evaluate(
    resources: dict[str, object], instance: dg.DagsterInstance, cursor: str | None
) -> dg.SensorResult:
    with dg.build_sensor_context(resources=resources, instance=instance, cursor=cursor) as context:
        result = landing_files_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def observed(result: dg.SensorResult) -> dict[str, dict[str, object]]:
    return {
        str(o.partition): {k: v.value for k, v in o.metadata.items()}
        for o in result.asset_events or []
        if isinstance(o, dg.AssetObservation)
    }


def test_the_sensor_observes_each_landing_day_once_per_change(
    land: LandFn, resources: dict[str, object]
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    a = land(DAY1, "a.ndjson", [event("e1", time="2026-09-01T08:00:00Z"), event("e2")])
    b = land(DAY1, "b.ndjson.gz", [event("e3", time="2026-09-01T09:00:00Z")])
    # A last line without its newline still counts, as ingest counts it.
    land(DAY2, "a.ndjson", f"{event('e4')}\n{event('e5')}".encode())
    os.utime(a, (1_788_249_600, 1_788_249_600))  # 2026-09-01 08:00:00 UTC
    os.utime(b, (1_788_253_200, 1_788_253_200))  # 09:00:00 UTC, the day's last arrival

    first = evaluate(resources, instance, None)
    seen = observed(first)
    assert sorted(seen) == ["2026-09-01", "2026-09-02"]
    day1 = seen["2026-09-01"]
    assert (day1["files"], day1["lines"]) == (2, 3)
    assert day1["bytes"] == a.stat().st_size + b.stat().st_size
    assert day1["last_arrival"] == 1_788_253_200
    assert day1["dagster/last_updated_timestamp"] == 1_788_253_200
    assert (seen["2026-09-02"]["files"], seen["2026-09-02"]["lines"]) == (1, 2)
    assert all(o.asset_key == dg.AssetKey(LANDING_FILES) for o in first.asset_events or [])
    # The same ingest request as before the observations existed.
    assert len(first.run_requests or []) == 1

    # Nothing changed: nothing observed again.
    again = evaluate(resources, instance, first.cursor)
    assert observed(again) == {}
    # A file lands late for day 2: that day alone is observed again.
    land(DAY2, "late.ndjson", [event("e6")])
    later = evaluate(resources, instance, again.cursor)
    assert sorted(observed(later)) == ["2026-09-02"]
    assert observed(later)["2026-09-02"]["lines"] == 3


def _freshness(instance: dg.DagsterInstance, now: datetime) -> dg.AssetCheckEvaluation:
    with freeze_time(now):
        result = dg.materialize(
            [landing_files, *landing_freshness_checks],
            instance=instance,
            selection=dg.AssetSelection.all_asset_checks(),
        )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_a_landing_day_with_nothing_by_the_deadline_fails_its_freshness_check() -> None:
    instance = dg.DagsterInstance.ephemeral()
    arrived = datetime(2026, 9, 1, 23, 0, tzinfo=UTC).timestamp()
    instance.report_runless_asset_event(
        dg.AssetObservation(
            LANDING_FILES,
            partition="2026-09-01",
            metadata={"dagster/last_updated_timestamp": dg.MetadataValue.timestamp(arrived)},
        )
    )
    # 05:59 on 2 September: 1 September is due only at 06:00, so the check still looks at
    # 31 August, which never landed.
    early = _freshness(instance, datetime(2026, 9, 2, 5, 59, tzinfo=UTC))
    assert not early.passed
    # 07:00: 1 September has landed by its deadline.
    on_time = _freshness(instance, datetime(2026, 9, 2, 7, 0, tzinfo=UTC))
    assert on_time.passed
    # 06:30 the next day: 2 September has nothing, and the check fails naming it.
    late = _freshness(instance, datetime(2026, 9, 3, 6, 30, tzinfo=UTC))
    assert not late.passed
    assert "2026-09-02" in (late.description or ""), late.description


def test_a_noisy_day_warns_and_a_very_noisy_day_errs_without_blocking_ingest(
    land: LandFn, resources: dict[str, object]
) -> None:
    good = [event(f"ok{n}", time="2026-09-01T08:00:00Z") for n in range(97)]
    land(DAY1, "a.ndjson", [*good, "{not json", "{nor this", "{nor that"])  # 3 of 100
    land(DAY2, "a.ndjson", [event("ok", time="2026-09-02T08:00:00Z"), "{broken"])  # 1 of 2
    result = dg.materialize(
        [ingest_landing_day],
        resources=resources,
        tags={RANGE_START: "2026-09-01", RANGE_END: "2026-09-02"},
        instance=dg.DagsterInstance.ephemeral(),
    )
    # Not blocking: both days are ingested and materialized.
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    rate = evaluations[names.QUARANTINE_RATE]
    assert not rate.passed
    assert rate.severity == dg.AssetCheckSeverity.ERROR
    assert rate.description == "quarantined above 5% of lines: 2026-09-01 3.0 %, 2026-09-02 50.0 %"
    assert all(e.passed for n, e in evaluations.items() if n != names.QUARANTINE_RATE)
