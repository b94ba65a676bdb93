"""The Dagster instance meterclose ships: its run queue keeps two runs of one partition
apart, and the CLI, whose runs bypass the queue, keeps to the same rule."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from dagster_project.instance import SHIPPED, prepare_instance
from dagster_project.jobs import PARTITION_TAG, QUEUE_TAG


def test_the_shipped_configuration_goes_where_nobody_configured_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = prepare_instance(home)
    assert config.read_text() == SHIPPED.read_text()
    # A copy an earlier version wrote is brought up to date…
    config.write_text("telemetry:\n  enabled: false\n")
    prepare_instance(home)
    assert config.read_text() == SHIPPED.read_text()
    # … and one of the operator's own is left alone.
    config.write_text("telemetry:\n  enabled: true\n")
    prepare_instance(home)
    assert config.read_text() == "telemetry:\n  enabled: true\n"


def test_the_run_queue_allows_one_run_per_partition_and_one_ingest(dagster_home: Path) -> None:
    prepare_instance(dagster_home)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        run_queue = instance.get_concurrency_config().run_queue_config
        assert run_queue is not None
        limits = run_queue.tag_concurrency_limits
    assert {"key": PARTITION_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in (
        limits
    )
    assert {"key": QUEUE_TAG, "value": "ingest", "limit": 1} in limits


def test_the_cli_waits_for_no_one_and_refuses_a_busy_partition(
    dagster_home: Path, settings: object
) -> None:
    from dagster_project import cli
    from dagster_project.definitions import defs

    with dg.DagsterInstance.get() as instance:
        running = instance.create_run_for_job(
            defs.resolve_job_def("close_job"),
            run_config={"ops": {"landing_calendar": {"config": {"prepared_by": "bob"}}}},
            tags={PARTITION_TAG: "2026-09"},
            status=dg.DagsterRunStatus.STARTED,
        )
    with pytest.raises(SystemExit) as refused:
        cli.run_close(settings, "2026-09", "alice")  # type: ignore[arg-type]
    assert str(refused.value) == (
        f"2026-09 is busy: run {running.run_id} (close_job) is started; wait for it to finish "
        "(see the Dagster UI)"
    )


def test_a_run_left_behind_by_a_killed_cli_does_not_hold_its_partition(
    dagster_home: Path, settings: object
) -> None:
    import subprocess
    import sys

    from dagster_project import cli
    from dagster_project.definitions import defs

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    with dg.DagsterInstance.get() as instance:
        orphan = instance.create_run_for_job(
            defs.resolve_job_def("close_job"),
            run_config={"ops": {"landing_calendar": {"config": {"prepared_by": "bob"}}}},
            tags={
                PARTITION_TAG: "2026-09",
                cli.CLI_PID_TAG: gone.stdout.strip(),
                cli.CLI_HOST_TAG: cli.HOST,
            },
            status=dg.DagsterRunStatus.STARTED,
        )
    # Not busy: the close itself runs, and stops for its own reason (this data root has no
    # reference data), said in the words of the error, not Dagster's.
    with pytest.raises(SystemExit) as stopped:
        cli.run_close(settings, "2026-09", "alice")  # type: ignore[arg-type]
    assert "busy" not in str(stopped.value)
    assert str(stopped.value).endswith("fx_rates.csv: fx_rates = None: file not found")
    assert "landing_calendar: rating.errors.ReferenceDataError: " in str(stopped.value)
    with dg.DagsterInstance.get() as instance:
        left = instance.get_run_by_id(orphan.run_id)
    assert left is not None and left.status == dg.DagsterRunStatus.FAILURE
