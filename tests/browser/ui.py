"""What a person does in the Dagster 1.13 UI, done in a real browser: look at the asset
graph, read a partition's status, launch a job for a partition with launchpad config.

Routes and selectors come from the UI's own source (shipped as source maps with
dagster-webserver 1.13):
- ``/asset-groups``: global asset lineage; groups start collapsed, the graph's settings
  button (gear) has "Expand all groups" (the URL then carries ``?expanded=...``).
- ``/assets/<key>?view=partitions``: a "Filter by name…" box over a virtualised list of
  partitions; each row is a ``[data-tooltip=<key>]`` cell followed by one status dot per
  status, styled ``background: var(--color-accent-green|red|blue|gray)`` for
  materialized, failed, materializing, missing; checkboxes "Materialized (n)" etc.
  ``&partition=<key>`` opens its detail (a "Materialized" tag, "Latest materialization",
  the metadata table, where a markdown entry is a "[Show Markdown]" link to a dialog).
- ``/locations/<location>/jobs/<job>/playground``: the launchpad. The partition picker is
  an input with placeholder "Partition" whose options are ``menuitem``s; picking one adds
  ``partition: <key>`` tags and merges the partition's config into the editor. The config
  editor is CodeMirror 5 (``.CodeMirror``); "Launch Run" opens ``/runs/<run id>``.
  The location here is the workspace's, ``dagster_project.definitions``; ``gql.job_path``
  asks the server rather than assuming it.
- ``/runs?q[0]=job:<job>``: the run list, one ``[class*=RunsFeedRow_row]`` per run, its
  tags as ``BaseTag``s ("key: value", cut short by CSS); hovering a tag shows the whole
  of it in a ``[class*=CustomTooltipProvider_tooltipContainer]``.
- ``/runs/<id>``: the run page; its event log has a "Filter…" box, and one
  ``[class*=LogsRowComponents_row]`` per event shown (message in ``…_messageCol``).

Every wait has a timeout (milliseconds, Playwright's unit).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from tests.browser import gql
from tests.browser.server import DagsterUi

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

TIMEOUT_MS = 30_000

# PartitionStatusDot colours (AssetPartitionStatus.tsx) -> status.
_DOT_STATUS = {
    "--color-accent-green": gql.MATERIALIZED,
    "--color-accent-red": gql.FAILED,
    "--color-accent-blue": gql.MATERIALIZING,
    "--color-accent-gray": gql.MISSING,
}


def _timeout_error() -> type[Exception]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    return PlaywrightTimeoutError


def goto(page: Page, ui: DagsterUi, path: str, *, timeout: int = TIMEOUT_MS) -> None:
    """Open a UI route (``/asset-groups``, ``/runs/<id>``, ...)."""
    page.goto(ui.url(path), timeout=timeout, wait_until="domcontentloaded")


# --- asset graph ------------------------------------------------------------------------


def open_asset_graph(
    page: Page, ui: DagsterUi, *, expand_groups: bool = True, timeout: int = TIMEOUT_MS
) -> None:
    """Open the global asset lineage (``/asset-groups``) and, with ``expand_groups``, expand
    every group through the graph's settings menu so that asset nodes are drawn."""
    goto(page, ui, "/asset-groups", timeout=timeout)
    # The toolbar's "Materialize all…" appears once the graph data is in.
    page.get_by_text("Materialize all", exact=False).first.wait_for(timeout=timeout)
    if not expand_groups:
        return
    settings = (
        page.get_by_role("button")
        .filter(has=page.get_by_role("img", name="settings", exact=True))
        .filter(has_not_text=re.compile(r"\w"))
    )
    settings.last.click(timeout=timeout)
    toggle = page.get_by_role("menuitem").filter(has_text=re.compile("(Expand|Collapse) all"))
    toggle.first.wait_for(timeout=timeout)
    if "Expand all groups" in toggle.first.inner_text():
        toggle.first.click(timeout=timeout)
        page.wait_for_url(re.compile(r"[?&]expanded="), timeout=timeout)
    page.keyboard.press("Escape")


def wait_for_asset_nodes(page: Page, names: list[str], *, timeout: int = TIMEOUT_MS) -> None:
    """Wait until every named asset node is drawn with its name (nodes show "Loading..."
    first) and no node is still loading."""
    for name in names:
        page.get_by_text(name, exact=True).first.wait_for(state="visible", timeout=timeout)
    page.get_by_text("Loading...", exact=True).first.wait_for(state="hidden", timeout=timeout)


def asset_node_names(page: Page) -> list[str]:
    """Names of the asset nodes drawn in the graph now."""
    names: list[str] = page.locator("[class*='AssetNode_assetName']").all_inner_texts()
    return sorted({n.strip() for n in names})


# --- partitions view --------------------------------------------------------------------


def _asset_route(asset_key: str | list[str]) -> str:
    path = asset_key.split("/") if isinstance(asset_key, str) else asset_key
    return "/assets/" + "/".join(path)


def open_partitions_view(
    page: Page, ui: DagsterUi, asset_key: str | list[str], *, timeout: int = TIMEOUT_MS
) -> None:
    """Open ``/assets/<key>?view=partitions`` and wait until its status counts are shown."""
    goto(page, ui, f"{_asset_route(asset_key)}?view=partitions", timeout=timeout)
    page.get_by_placeholder(re.compile("^Filter by")).first.wait_for(timeout=timeout)
    page.get_by_text(re.compile(r"^Materialized \(\d+\)$")).first.wait_for(timeout=timeout)


def partition_counts_in_ui(page: Page) -> dict[str, int]:
    """The partitions view's counts: {"MATERIALIZED": n, "FAILED": n, ...}."""
    counts: dict[str, int] = {}
    for label in page.get_by_text(
        re.compile(r"^(Materialized|Failed|Materializing|Missing) \(\d[\d,]*\)$")
    ).all_inner_texts():
        m = re.match(r"^(\w+) \(([\d,]+)\)$", label.strip())
        if m:
            counts[m.group(1).upper()] = int(m.group(2).replace(",", ""))
    return counts


def partition_status_in_ui(
    page: Page,
    ui: DagsterUi,
    asset_key: str | list[str],
    partition_key: str,
    *,
    show_detail: bool = True,
    timeout: int = TIMEOUT_MS,
) -> list[str]:
    """Open the asset's partitions view, filter the list to ``partition_key`` and read its
    status dots: e.g. ["MATERIALIZED"], ["FAILED"] or ["MISSING"] (several for a
    multi-partitioned row). Compare with ``gql.partition_status``. With ``show_detail``,
    then click the row so that its detail (latest materialization, run) is on screen for
    a screenshot."""
    open_partitions_view(page, ui, asset_key, timeout=timeout)
    page.get_by_placeholder(re.compile("^Filter by")).first.fill(partition_key)
    cell = page.locator(f'[data-tooltip="{partition_key}"]').first
    cell.wait_for(timeout=timeout)
    styles: list[str] = cell.evaluate(
        """cell => [...cell.parentElement.children]
            .filter(el => el !== cell)
            .map(el => el.getAttribute('style') || '')"""
    )
    statuses = [
        status for style in styles for var, status in _DOT_STATUS.items() if f"var({var})" in style
    ]
    if not statuses:
        raise AssertionError(f"no status dot for {asset_key} {partition_key}: {styles}")
    if show_detail:
        cell.click(timeout=timeout)
        _wait_for_partition_detail(page, partition_key, timeout=timeout)
    return statuses


def open_partition_detail(
    page: Page,
    ui: DagsterUi,
    asset_key: str | list[str],
    partition_key: str,
    *,
    timeout: int = TIMEOUT_MS,
) -> None:
    """Open one partition's detail panel (latest materialization, run, metadata)."""
    goto(
        page,
        ui,
        f"{_asset_route(asset_key)}?view=partitions&partition={quote(partition_key, safe='')}",
        timeout=timeout,
    )
    _wait_for_partition_detail(page, partition_key, timeout=timeout)


def _wait_for_partition_detail(page: Page, partition_key: str, *, timeout: int) -> None:
    # AssetPartitionDetail.tsx: the heading row (a grid carrying data-tooltip=<key>) shows a
    # spinner (role=progressbar) until the partition's events are in.
    page.wait_for_url(re.compile(r"[?&]partition="), timeout=timeout)
    page.wait_for_function(
        """key => [...document.querySelectorAll('[data-tooltip]')]
            .filter(e => e.getAttribute('data-tooltip') === key && e.style.display === 'grid')
            .some(e => !e.querySelector('[role=progressbar]'))""",
        arg=partition_key,
        timeout=timeout,
    )
    page.get_by_text(re.compile("^Latest (materialization|observation)$")).first.wait_for(
        timeout=timeout
    )


def show_markdown_metadata(page: Page, label: str, *, timeout: int = TIMEOUT_MS) -> str:
    """On a partition's detail panel (``open_partition_detail``): open the markdown
    metadata entry ``label`` (a table the panel shows as "[Show Markdown]") in its dialog;
    the dialog's text, e.g. a table's cells separated by tabs, one row a line."""
    row = page.locator("tr").filter(has=page.get_by_text(label, exact=True)).first
    row.get_by_text("[Show Markdown]", exact=True).click(timeout=timeout)
    dialog = page.get_by_role("dialog").filter(has_text=label).first
    dialog.wait_for(timeout=timeout)
    # The dialog fades in: wait until it and every element around it are fully opaque.
    page.wait_for_function(
        """el => {
            for (let e = el; e; e = e.parentElement) {
                if (getComputedStyle(e).opacity !== '1') return false;
            }
            return true;
        }""",
        arg=dialog.element_handle(timeout=timeout),
        timeout=timeout,
    )
    return str(dialog.inner_text(timeout=timeout))


# --- launchpad --------------------------------------------------------------------------


def open_launchpad(page: Page, ui: DagsterUi, job: str, *, timeout: int = TIMEOUT_MS) -> None:
    """Open a job's launchpad with a fresh session (earlier sessions of this job in this
    browser context are dropped, so no partition or config carries over)."""
    route = gql.job_path(ui, job) + "/playground"
    goto(page, ui, "/", timeout=timeout)
    page.evaluate(
        """job => Object.keys(localStorage)
            .filter(k => k.startsWith('dagster.v2.') && k.endsWith('-' + job))
            .forEach(k => localStorage.removeItem(k))""",
        job,
    )
    goto(page, ui, route, timeout=timeout)
    page.locator(".CodeMirror").first.wait_for(timeout=timeout)
    page.get_by_role("button", name="Launch Run").wait_for(timeout=timeout)


def choose_partition(page: Page, partition_key: str, *, timeout: int = TIMEOUT_MS) -> None:
    """Pick a partition in the launchpad's partition picker; waits for its tag."""
    picker = page.get_by_placeholder("Partition", exact=True)
    try:
        picker.wait_for(timeout=timeout)
    except _timeout_error():
        raise AssertionError("this launchpad has no partition picker") from None
    picker.click(timeout=timeout)
    picker.fill(partition_key, timeout=timeout)
    option = page.get_by_role("menuitem", name=partition_key, exact=True)
    try:
        option.click(timeout=timeout)
    except _timeout_error():
        offered = page.get_by_role("menuitem").all_inner_texts()[:10]
        raise AssertionError(
            f"partition {partition_key!r} not offered by the picker (offered: {offered})"
        ) from None
    page.get_by_text(f"partition: {partition_key}", exact=True).first.wait_for(timeout=timeout)


def launchpad_config(page: Page) -> str:
    """The YAML in the launchpad's config editor now."""
    text: str = page.locator(".CodeMirror").first.evaluate("el => el.CodeMirror.getValue()")
    return text


def set_launchpad_config(page: Page, config_yaml: str, *, timeout: int = TIMEOUT_MS) -> None:
    """Replace the editor's YAML with ``config_yaml``, typed in as a person pastes it (the
    partition's own config, if any, is replaced too; omitted resource config falls back to
    the definitions' defaults). Waits until the editor holds exactly that text."""
    editor = page.locator(".CodeMirror").first
    editor.click(timeout=timeout)
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.insert_text(config_yaml)
    page.wait_for_function(
        "text => document.querySelector('.CodeMirror').CodeMirror.getValue() === text",
        arg=config_yaml,
        timeout=timeout,
    )


def launchpad_errors(page: Page) -> str:
    """The launchpad's ERRORS panel, as text (empty when it cannot be read)."""
    # RunPreview.tsx: a section titled "Errors" (upper-cased by CSS), one row per error;
    # validation answers a moment after the editor changes.
    panel = page.get_by_text("Errors", exact=True).first.locator("xpath=..")
    with contextlib.suppress(Exception):
        panel.locator("[class*='errorRowContainer']").first.wait_for(timeout=5_000)
    try:
        return str(panel.inner_text(timeout=2_000))
    except Exception:
        return ""


def wait_until_launchable(page: Page, *, timeout: int = TIMEOUT_MS) -> None:
    """Wait until "Launch Run" is enabled (the config validated); fail with the launchpad's
    errors when it stays disabled."""
    from playwright.sync_api import expect

    button = page.get_by_role("button", name="Launch Run")
    try:
        expect(button).to_be_enabled(timeout=timeout)
    except AssertionError:
        raise AssertionError(
            f"Launch Run stays disabled: {launchpad_errors(page) or 'no errors shown'}"
        ) from None
    page.mouse.move(0, 0)  # no tooltip left over the page


def click_launch_run(page: Page, *, timeout: int = TIMEOUT_MS) -> str:
    """Click "Launch Run" once it is enabled; the new run's id (the UI opens
    ``/runs/<id>``)."""
    wait_until_launchable(page, timeout=timeout)
    page.get_by_role("button", name="Launch Run").click(timeout=timeout)
    pattern = re.compile(r"/runs/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
    try:
        page.wait_for_url(pattern, timeout=timeout)
    except _timeout_error():
        dialog = page.get_by_role("dialog")
        said = dialog.first.inner_text() if dialog.count() else launchpad_errors(page)
        raise AssertionError(f"no run page after Launch Run: {said[:2000]}") from None
    m = pattern.search(page.url)
    assert m, page.url
    return m.group(1)


def launch_from_launchpad(
    page: Page,
    ui: DagsterUi,
    job: str,
    *,
    partition: str | None = None,
    config_yaml: str | None = None,
    screenshot: Callable[[Page, str], object] | None = None,
    timeout: int = TIMEOUT_MS,
) -> str:
    """Open ``job``'s launchpad, pick ``partition`` (if given), type ``config_yaml`` (if
    given), click "Launch Run"; the run id. ``screenshot``: the ``screenshot`` fixture,
    to keep a picture of the filled launchpad just before launching."""
    open_launchpad(page, ui, job, timeout=timeout)
    if partition is not None:
        choose_partition(page, partition, timeout=timeout)
    if config_yaml is not None:
        set_launchpad_config(page, config_yaml, timeout=timeout)
    if screenshot is not None:
        wait_until_launchable(page, timeout=timeout)
        screenshot(page, f"launchpad-{job}")
    return click_launch_run(page, timeout=timeout)


def launch_and_wait(
    page: Page,
    ui: DagsterUi,
    job: str,
    *,
    partition: str | None = None,
    config_yaml: str | None = None,
    screenshot: Callable[[Page, str], object] | None = None,
    timeout: int = TIMEOUT_MS,
    run_timeout: float = 180,
) -> gql.RunInfo:
    """``launch_from_launchpad`` then wait (GraphQL) until the run has finished."""
    run_id = launch_from_launchpad(
        page,
        ui,
        job,
        partition=partition,
        config_yaml=config_yaml,
        screenshot=screenshot,
        timeout=timeout,
    )
    return gql.wait_for_run(ui, run_id, timeout=run_timeout)


# RunStatusTag.tsx: what the run page's header says for each run status.
RUN_STATUS_TEXT = {
    "QUEUED": "Queued",
    "NOT_STARTED": "Not started",
    "STARTING": "Starting",
    "STARTED": "Started",
    "SUCCESS": "Success",
    "FAILURE": "Failure",
    "CANCELING": "Canceling",
    "CANCELED": "Canceled",
}


def open_run(page: Page, ui: DagsterUi, run_id: str, *, timeout: int = TIMEOUT_MS) -> None:
    """Open a run's page (``/runs/<id>``) and wait until its events are listed."""
    goto(page, ui, f"/runs/{run_id}", timeout=timeout)
    page.get_by_text("EVENT TYPE", exact=False).first.wait_for(timeout=timeout)
    page.get_by_text(re.compile("^Loading run logs")).first.wait_for(
        state="hidden", timeout=timeout
    )


def wait_for_run_page_status(page: Page, status: str, *, timeout: int = TIMEOUT_MS) -> None:
    """On ``/runs/<id>``: wait until the header's status tag shows ``status`` (a GraphQL
    run status such as "SUCCESS" or "FAILURE"; the UI updates it live)."""
    page.get_by_text(RUN_STATUS_TEXT[status], exact=True).first.wait_for(timeout=timeout)


# --- run list and run log ---------------------------------------------------------------

_RUN_ROW = "[class*='RunsFeedRow_row']"
_TOOLTIP = "[class*='CustomTooltipProvider_tooltipContainer']"
_LOG_ROW = "[class*='LogsRowComponents_row']"
_LOG_MESSAGE = "[class*='LogsRowComponents_messageCol']"


def open_runs_list(
    page: Page, ui: DagsterUi, *, job: str | None = None, timeout: int = TIMEOUT_MS
) -> None:
    """Open the run list (``/runs``), filtered to one job's runs with ``job``, and wait
    until its first row is drawn."""
    query = f"?q%5B0%5D={quote(f'job:{job}', safe='')}" if job else ""
    goto(page, ui, f"/runs{query}", timeout=timeout)
    page.locator(_RUN_ROW).first.wait_for(timeout=timeout)


def runs_list_row(page: Page, run_id: str, *, timeout: int = TIMEOUT_MS) -> Locator:
    """The run list's row of a run (found by the short id the list shows)."""
    row = page.locator(_RUN_ROW).filter(has=page.get_by_text(run_id[:8], exact=True)).first
    row.wait_for(timeout=timeout)
    return row


def show_run_tag_in_runs_list(
    page: Page,
    ui: DagsterUi,
    run_id: str,
    key: str,
    *,
    job: str | None = None,
    timeout: int = TIMEOUT_MS,
) -> str:
    """Open the run list (of ``job``), find the run's row and hover its tag ``key``, so
    that the whole tag shows in a tooltip (for a screenshot); the tag as the tooltip
    reads, ``"key: value"``. Fails if the row shows no such tag."""
    open_runs_list(page, ui, job=job, timeout=timeout)
    row = runs_list_row(page, run_id, timeout=timeout)
    tag = row.get_by_text(f"{key}: ", exact=False)
    try:
        tag.first.wait_for(timeout=timeout)
    except _timeout_error():
        raise AssertionError(
            f"run {run_id[:8]} shows no tag {key!r} in the run list: {row.inner_text()!r}"
        ) from None
    tag.first.hover(timeout=timeout)
    tooltip = page.locator(_TOOLTIP).filter(has_text=f"{key}: ").first
    tooltip.wait_for(timeout=timeout)
    return str(tooltip.inner_text(timeout=timeout)).strip()


def filter_run_log(page: Page, text: str, *, timeout: int = TIMEOUT_MS) -> list[str]:
    """On a run page (``open_run``): type ``text`` into the event log's filter and wait
    until an event containing it is listed; the messages of the events shown."""
    page.get_by_placeholder(re.compile("^Filter")).first.fill(text, timeout=timeout)
    rows = page.locator(_LOG_ROW).filter(has_text=text)
    try:
        rows.first.wait_for(timeout=timeout)
    except _timeout_error():
        raise AssertionError(f"no event of this run's log contains {text!r}") from None
    messages: list[str] = page.locator(f"{_LOG_ROW} {_LOG_MESSAGE}").all_inner_texts()
    page.mouse.move(0, 0)
    return [m.strip() for m in messages]
