"""GraphQL read-outs of the running UI: code locations, runs and their events, partition
statuses. The cross-check for what the browser shows, and how a test waits for a run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import yaml

from tests.browser.server import DagsterUi

# The statuses the UI's partition view shows (AssetPartitionStatus in the Dagster UI).
MATERIALIZED = "MATERIALIZED"
MATERIALIZING = "MATERIALIZING"
FAILED = "FAILED"
MISSING = "MISSING"

FINISHED_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

JOB_LOCATION_QUERY = """
{
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name location { name } jobs { name } }
    }
    ... on PythonError { message }
  }
}
"""


def job_repository(ui: DagsterUi, job: str) -> tuple[str, str]:
    """(repository name, code location name) of the repository that defines ``job``."""
    nodes = ui.graphql(JOB_LOCATION_QUERY)["repositoriesOrError"].get("nodes") or []
    for repo in nodes:
        if any(j["name"] == job for j in repo["jobs"]):
            return repo["name"], repo["location"]["name"]
    known = sorted(j["name"] for repo in nodes for j in repo["jobs"])
    raise AssertionError(f"no job {job!r} in the workspace; jobs: {', '.join(known)}")


def job_path(ui: DagsterUi, job: str) -> str:
    """The UI route of a job, as the UI builds it (``/locations/<location>/jobs/<job>``; a
    named repository shows as ``<repo>@<location>``)."""
    repo, location = job_repository(ui, job)
    repo_path = quote(location, safe="") if repo == "__repository__" else f"{repo}@{location}"
    return f"/locations/{repo_path}/jobs/{job}"


def job_selector(ui: DagsterUi, job: str) -> dict[str, str]:
    """The GraphQL ``PipelineSelector`` of a job (its name, repository and code location)."""
    repo, location = job_repository(ui, job)
    return {"pipelineName": job, "repositoryName": repo, "repositoryLocationName": location}


JOB_ASSETS_QUERY = """
query JobAssets($selector: PipelineSelector!) {
  assetNodes(pipeline: $selector) { assetKey { path } }
}
"""


def job_asset_keys(ui: DagsterUi, job: str) -> list[str]:
    """The keys (``a/b``) of the assets a job materializes, sorted."""
    nodes = ui.graphql(JOB_ASSETS_QUERY, {"selector": job_selector(ui, job)})["assetNodes"]
    return sorted("/".join(n["assetKey"]["path"]) for n in nodes)


JOB_OP_CONFIG_QUERY = """
query JobOpConfig($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline {
      solidHandles {
        handleID
        solid {
          definition {
            ... on SolidDefinition {
              configField { configType { ... on CompositeConfigType { fields { name } } } }
            }
          }
        }
      }
    }
    ... on PipelineNotFoundError { message }
    ... on PythonError { message }
  }
}
"""


def op_config_fields(ui: DagsterUi, job: str) -> dict[str, list[str]]:
    """Op (or asset step) name -> the names of its config fields, for every op of a job
    that takes config: what goes under ``ops: <name>: config:`` in the launchpad. Ops
    inside graphs are named by their handle (``graph.op``)."""
    found = ui.graphql(JOB_OP_CONFIG_QUERY, {"selector": job_selector(ui, job)})["pipelineOrError"]
    if found["__typename"] != "Pipeline":
        raise AssertionError(f"job {job}: {found['__typename']}: {found.get('message')}")
    fields: dict[str, list[str]] = {}
    for handle in found["solidHandles"]:
        config = (handle["solid"]["definition"].get("configField") or {}).get("configType")
        names = [f["name"] for f in (config or {}).get("fields") or []]
        if names:
            fields[handle["handleID"]] = names
    return fields


def op_config_yaml(ui: DagsterUi, job: str, **values: str) -> str:
    """Launchpad YAML that gives ``values`` to the one op of ``job`` whose config has all
    those fields, e.g. ``op_config_yaml(ui, "lock_job", locked_by="carol")`` ->
    ``ops: {lock_period: {config: {locked_by: carol}}}`` as block YAML. The op is found
    in the job's config schema, so a renamed op does not break a test."""
    candidates = [
        op for op, names in op_config_fields(ui, job).items() if set(values) <= set(names)
    ]
    if len(candidates) != 1:
        raise AssertionError(
            f"{job}: {len(candidates)} ops take config {sorted(values)} "
            f"(ops with config: {op_config_fields(ui, job)})"
        )
    text: str = yaml.safe_dump({"ops": {candidates[0]: {"config": dict(values)}}}, sort_keys=False)
    return text


# --- runs -------------------------------------------------------------------------------

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      id
      status
      jobName
      runConfigYaml
      tags { key value }
      stepStats { stepKey status startTime endTime }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""


@dataclass
class RunInfo:
    run_id: str
    status: str  # QUEUED, NOT_STARTED, STARTING, STARTED, SUCCESS, FAILURE, CANCELING, CANCELED
    job_name: str
    run_config_yaml: str
    tags: dict[str, str] = field(default_factory=dict)
    step_stats: list[dict[str, Any]] = field(default_factory=list)

    @property
    def partition(self) -> str | None:
        return self.tags.get("dagster/partition")

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_RUN_STATUSES


def run_info(ui: DagsterUi, run_id: str) -> RunInfo:
    """A run's status, job, config, tags and step statuses."""
    found = ui.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
    if found["__typename"] != "Run":
        raise AssertionError(f"run {run_id}: {found['__typename']}: {found.get('message')}")
    return RunInfo(
        run_id=found["id"],
        status=found["status"],
        job_name=found["jobName"],
        run_config_yaml=found["runConfigYaml"],
        tags={t["key"]: t["value"] for t in found["tags"]},
        step_stats=found["stepStats"],
    )


def wait_for_run(ui: DagsterUi, run_id: str, *, timeout: float = 180, poll: float = 1.0) -> RunInfo:
    """Poll until the run is SUCCESS, FAILURE or CANCELED; its RunInfo. A queued run waits
    for the daemon (a few seconds in `dagster dev`)."""
    deadline = time.monotonic() + timeout
    info = run_info(ui, run_id)
    while not info.finished:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"run {run_id} ({info.job_name}) still {info.status} after {timeout:.0f}s\n"
                f"{ui.log_tail(2000)}"
            )
        time.sleep(poll)
        info = run_info(ui, run_id)
    return info


RUNS_QUERY = """
query Runs($filter: RunsFilter, $limit: Int) {
  runsOrError(filter: $filter, limit: $limit) {
    __typename
    ... on Runs { results { id status jobName tags { key value } } }
    ... on PythonError { message }
  }
}
"""


def runs(
    ui: DagsterUi, *, job: str | None = None, tags: dict[str, str] | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Recent runs, newest first, optionally of one job and/or with given tags."""
    run_filter: dict[str, Any] = {}
    if job:
        run_filter["pipelineName"] = job
    if tags:
        run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    found = ui.graphql(RUNS_QUERY, {"filter": run_filter, "limit": limit})["runsOrError"]
    if found["__typename"] != "Runs":
        raise AssertionError(f"runsOrError: {found}")
    results: list[dict[str, Any]] = found["results"]
    return results


RUN_EVENTS_QUERY = """
query RunEvents($runId: ID!, $cursor: String, $limit: Int) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: $limit) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message level stepKey timestamp }
        ... on MaterializationEvent { assetKey { path } partition }
        ... on FailedToMaterializeEvent { assetKey { path } partition }
        ... on ExecutionStepFailureEvent {
          error { message className errorChain { error { message className } } }
        }
        ... on RunFailureEvent { error { message } }
        ... on AssetCheckEvaluationEvent {
          evaluation { checkName success assetKey { path } severity }
        }
      }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""


def run_events(ui: DagsterUi, run_id: str, *, page_size: int = 500) -> list[dict[str, Any]]:
    """Every event of a run, in order: each a dict with ``__typename`` (e.g.
    ``MaterializationEvent``, ``ExecutionStepFailureEvent``, ``AssetCheckEvaluationEvent``,
    ``RunSuccessEvent``), ``message``, ``stepKey`` and the type's own fields."""
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        found = ui.graphql(
            RUN_EVENTS_QUERY, {"runId": run_id, "cursor": cursor, "limit": page_size}
        )["logsForRun"]
        if found["__typename"] != "EventConnection":
            raise AssertionError(f"logsForRun({run_id}): {found}")
        events += found["events"]
        cursor = found["cursor"]
        if not found["hasMore"] or not found["events"]:
            return events


def materialized_assets(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(asset key as ``a/b``, partition) of each materialization among a run's events."""
    return [
        ("/".join(e["assetKey"]["path"]), e.get("partition"))
        for e in events
        if e["__typename"] == "MaterializationEvent"
    ]


def _error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    chain = [error["message"]] + [c["error"]["message"] for c in error.get("errorChain") or []]
    return "\n".join(m.strip() for m in chain if m and m.strip())


def step_failures(events: list[dict[str, Any]]) -> dict[str, str]:
    """Failed step key -> error message (with the errors that caused it), among a run's
    events."""
    return {
        e["stepKey"]: _error_text(e.get("error")) or e.get("message", "")
        for e in events
        if e["__typename"] == "ExecutionStepFailureEvent"
    }


def check_results(events: list[dict[str, Any]]) -> dict[tuple[str, str], bool]:
    """(asset key, check name) -> passed, among a run's events."""
    return {
        ("/".join(e["evaluation"]["assetKey"]["path"]), e["evaluation"]["checkName"]): e[
            "evaluation"
        ]["success"]
        for e in events
        if e["__typename"] == "AssetCheckEvaluationEvent"
    }


# --- partitions -------------------------------------------------------------------------

PARTITIONS_QUERY = """
query Partitions($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode {
      isPartitioned
      partitionKeys
      partitionKeysByDimension { name partitionKeys }
      assetPartitionStatuses {
        __typename
        ... on DefaultPartitionStatuses {
          materializedPartitions
          materializingPartitions
          failedPartitions
          unmaterializedPartitions
        }
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey
            primaryDimEndKey
            secondaryDim {
              __typename
              ... on DefaultPartitionStatuses {
                materializedPartitions
                materializingPartitions
                failedPartitions
                unmaterializedPartitions
              }
              ... on TimePartitionStatuses { ranges { status startKey endKey } }
            }
          }
        }
      }
    }
    ... on AssetNotFoundError { message }
  }
}
"""


def _asset_path(asset_key: str | list[str]) -> list[str]:
    return asset_key.split("/") if isinstance(asset_key, str) else list(asset_key)


def _one_dimension(statuses: dict[str, Any], keys: list[str]) -> dict[str, str]:
    result = dict.fromkeys(keys, MISSING)
    if statuses["__typename"] == "DefaultPartitionStatuses":
        for name, status in (
            ("materializedPartitions", MATERIALIZED),
            ("failedPartitions", FAILED),
            ("materializingPartitions", MATERIALIZING),
        ):
            for key in statuses[name]:
                result[key] = status
        return result
    index = {key: i for i, key in enumerate(keys)}
    for r in statuses["ranges"]:
        for key in keys[index[r["startKey"]] : index[r["endKey"]] + 1]:
            result[key] = r["status"]
    return result


def partition_statuses(ui: DagsterUi, asset_key: str | list[str]) -> dict[str, str]:
    """Partition key -> MATERIALIZED, FAILED, MATERIALIZING or MISSING, for every partition
    of an asset, from the same field the UI's partitions view reads. A multi-partitioned
    asset's keys read as the UI shows them: dimension keys joined by ``|`` in the order of
    the dimensions' names."""
    found = ui.graphql(PARTITIONS_QUERY, {"assetKey": {"path": _asset_path(asset_key)}})[
        "assetNodeOrError"
    ]
    if found["__typename"] != "AssetNode":
        raise AssertionError(f"asset {asset_key}: {found.get('message', found['__typename'])}")
    if not found["isPartitioned"]:
        raise AssertionError(f"asset {asset_key} is not partitioned")
    statuses = found["assetPartitionStatuses"]
    if statuses["__typename"] != "MultiPartitionStatuses":
        return _one_dimension(statuses, found["partitionKeys"])
    dims = {d["name"]: d["partitionKeys"] for d in found["partitionKeysByDimension"]}
    primary = statuses["primaryDimensionName"]
    (secondary,) = [name for name in dims if name != primary]
    primary_keys = dims[primary]
    index = {key: i for i, key in enumerate(primary_keys)}
    names = sorted(dims)

    def joined(p: str, s: str) -> str:
        by_name = {primary: p, secondary: s}
        return "|".join(by_name[n] for n in names)

    result = {joined(p, s): MISSING for p in primary_keys for s in dims[secondary]}
    for r in statuses["ranges"]:
        inner = _one_dimension(r["secondaryDim"], dims[secondary])
        for p in primary_keys[index[r["primaryDimStartKey"]] : index[r["primaryDimEndKey"]] + 1]:
            for s, status in inner.items():
                result[joined(p, s)] = status
    return result


def partition_status(ui: DagsterUi, asset_key: str | list[str], partition_key: str) -> str:
    """MATERIALIZED, FAILED, MATERIALIZING or MISSING for one partition of an asset."""
    statuses = partition_statuses(ui, asset_key)
    if partition_key not in statuses:
        sample = ", ".join(list(statuses)[:5])
        raise AssertionError(
            f"{asset_key} has no partition {partition_key!r} "
            f"({len(statuses)} partitions, e.g. {sample})"
        )
    return statuses[partition_key]


# --- asset history ----------------------------------------------------------------------

LATEST_MATERIALIZATION_QUERY = """
query LatestMaterialization($assetKey: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $assetKey) {
    __typename
    ... on Asset { assetMaterializations(partitions: $partitions, limit: 1) { runId timestamp } }
    ... on AssetNotFoundError { message }
  }
}
"""


@dataclass(frozen=True)
class Materialization:
    """Which run last materialized an asset (partition), and when (epoch milliseconds)."""

    run_id: str
    timestamp: str


def latest_materialization(
    ui: DagsterUi, asset_key: str | list[str], partition_key: str | None = None
) -> Materialization | None:
    """The latest materialization of an asset, or of one of its partitions; None if it was
    never materialized."""
    found = ui.graphql(
        LATEST_MATERIALIZATION_QUERY,
        {
            "assetKey": {"path": _asset_path(asset_key)},
            "partitions": None if partition_key is None else [partition_key],
        },
    )["assetOrError"]
    if found["__typename"] != "Asset":
        return None
    events = found["assetMaterializations"]
    return Materialization(events[0]["runId"], events[0]["timestamp"]) if events else None


ASSET_CHECKS_QUERY = """
query AssetChecks($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode {
      assetChecksOrError { __typename ... on AssetChecks { checks { name } } }
    }
    ... on AssetNotFoundError { message }
  }
}
"""


def asset_check_names(ui: DagsterUi, asset_key: str | list[str]) -> list[str]:
    """The names of an asset's checks, sorted."""
    found = ui.graphql(ASSET_CHECKS_QUERY, {"assetKey": {"path": _asset_path(asset_key)}})[
        "assetNodeOrError"
    ]
    if found["__typename"] != "AssetNode":
        raise AssertionError(f"asset {asset_key}: {found.get('message', found['__typename'])}")
    checks = found["assetChecksOrError"]
    if checks["__typename"] != "AssetChecks":
        return []
    return sorted(c["name"] for c in checks["checks"])


CHECK_EXECUTIONS_QUERY = """
query CheckExecutions(
  $assetKey: AssetKeyInput!, $checkName: String!, $partition: String, $limit: Int!
) {
  assetCheckExecutions(
    assetKey: $assetKey, checkName: $checkName, partition: $partition, limit: $limit
  ) {
    runId
    status
    partition
    timestamp
    evaluation { success }
  }
}
"""


@dataclass(frozen=True)
class CheckExecution:
    """One execution of an asset check: planned by a run (``status`` IN_PROGRESS, then
    SKIPPED if the run never evaluated it) or evaluated (``success`` not None)."""

    run_id: str
    status: str  # IN_PROGRESS, SUCCEEDED, FAILED, EXECUTION_FAILED, SKIPPED
    partition: str | None
    timestamp: float
    success: bool | None  # None: no evaluation was recorded

    @property
    def evaluated(self) -> bool:
        return self.success is not None


def check_executions(
    ui: DagsterUi,
    asset_key: str | list[str],
    check_name: str,
    *,
    partition_key: str | None = None,
    limit: int = 100,
) -> list[CheckExecution]:
    """An asset check's executions, newest first: all of them, or one partition's (an
    evaluation recorded without a partition is then left out)."""
    found = ui.graphql(
        CHECK_EXECUTIONS_QUERY,
        {
            "assetKey": {"path": _asset_path(asset_key)},
            "checkName": check_name,
            "partition": partition_key,
            "limit": limit,
        },
    )["assetCheckExecutions"]
    return [
        CheckExecution(
            run_id=e["runId"],
            status=e["status"],
            partition=e["partition"],
            timestamp=e["timestamp"],
            success=e["evaluation"]["success"] if e["evaluation"] else None,
        )
        for e in found
    ]


def log_messages(events: list[dict[str, Any]], *, level: str | None = None) -> list[str]:
    """The messages of a run's log events (``LogMessageEvent``), optionally of one level
    (``WARNING``, ``INFO``...)."""
    return [
        e["message"]
        for e in events
        if e["__typename"] == "LogMessageEvent" and (level is None or e.get("level") == level)
    ]
