"""Smoke test of the Dagster UI on generated data, in Chromium: the asset graph draws the
close's assets, and a partitioned job launched from the launchpad runs, tagged with the
partition picked, with the partition's status the same in the UI and in GraphQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.browser import gql, ui
from tests.browser.server import DagsterUi, UiEnv

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.browser.conftest import DagsterUiFactory, Screenshot, UiEnvFactory

pytestmark = pytest.mark.browser

MONTH = "2026-09"
LANDING_DAY = "2026-09-02"  # a landing day the generator fills for MONTH
# Built-in run config, whatever the job's own schema: proves what was typed is what ran.
LAUNCH_CONFIG = """\
loggers:
  console:
    config:
      log_level: INFO
"""


@pytest.fixture(scope="module")
def ui_env(ui_env_factory: UiEnvFactory) -> UiEnv:
    env = ui_env_factory()
    env.run_cli(
        "generate",
        *("--month", MONTH, "--events", "300", "--seed", "3"),
        *("--out", str(env.data_dir)),
    )
    assert any((env.data_dir / "landing" / "usage" / LANDING_DAY).iterdir())
    return env


@pytest.fixture(scope="module")
def dagster(ui_env: UiEnv, dagster_ui_factory: DagsterUiFactory) -> DagsterUi:
    return dagster_ui_factory(ui_env)


def test_asset_graph_shows_the_close_assets(
    dagster: DagsterUi, page: Page, screenshot: Screenshot
) -> None:
    ui.open_asset_graph(page, dagster)
    ui.wait_for_asset_nodes(page, ["billable_usage", "journal_lines"])
    screenshot(page, "asset-graph")
    drawn = ui.asset_node_names(page)
    assert {"usage_events", "billable_usage", "journal_lines"} <= set(drawn), drawn


def test_launch_a_partition_from_the_launchpad(
    dagster: DagsterUi, page: Page, screenshot: Screenshot
) -> None:
    run = ui.launch_and_wait(
        page,
        dagster,
        "ingest_job",
        partition=LANDING_DAY,
        config_yaml=LAUNCH_CONFIG,
        screenshot=screenshot,
        run_timeout=180,
    )
    # Launched through the UI, for the partition picked, with the config typed in.
    assert run.job_name == "ingest_job"
    assert run.status in {"SUCCESS", "FAILURE"}, run
    assert run.partition == LANDING_DAY
    assert run.tags.get("dagster/from_ui") == "true"
    assert "log_level: INFO" in run.run_config_yaml, run.run_config_yaml
    assert gql.runs(dagster, job="ingest_job", tags={"dagster/partition": LANDING_DAY})

    # The run page the launch opened shows the same outcome.
    ui.open_run(page, dagster, run.run_id)
    ui.wait_for_run_page_status(page, run.status)
    screenshot(page, "run")

    # The partitions view and GraphQL agree on the day's status.
    in_ui = ui.partition_status_in_ui(page, dagster, "usage_events", LANDING_DAY)
    in_graphql = gql.partition_status(dagster, "usage_events", LANDING_DAY)
    assert in_ui == [in_graphql]
    events = gql.run_events(dagster, run.run_id)
    if run.status == "SUCCESS":
        assert in_graphql == gql.MATERIALIZED
        assert ("usage_events", LANDING_DAY) in gql.materialized_assets(events)
        # The day's detail panel says so too, naming the run.
        page.get_by_text("Materialized", exact=True).first.wait_for(timeout=10_000)
        page.get_by_text(run.run_id[:8], exact=True).first.wait_for(timeout=10_000)
    else:
        print(f"ingest_job {LANDING_DAY} failed: {gql.step_failures(events)}")
        assert in_graphql in {gql.FAILED, gql.MISSING, gql.MATERIALIZED}
    screenshot(page, "partitions")
    # Every other day of the month was left alone.
    others = gql.partition_statuses(dagster, "usage_events")
    assert {k: s for k, s in others.items() if k != LANDING_DAY and s != gql.MISSING} == {}
