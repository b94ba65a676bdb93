"""ERP import files of a month: NetSuite, Oracle FBDI and generic, with a manifest.

Exports are immutable: a month whose journals have not changed keeps its delivered version
(same bytes); a changed month gets a new version beside it, never an overwrite.
"""

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl

from assets.gates import check_result, failed_checks, open_month
from assets.journals import JOURNAL_LINES
from checks import names
from checks.outcome import CheckOutcome, markdown_table
from dagster_project.partitions import close_monthly_partition
from rating.exports import LINE_LIMITS, manifest_bytes, render_all, split_journals
from resources.control_db import ControlDbResource
from resources.warehouse import WarehouseResource

ERP_EXPORTS = "erp_exports"


def write_version(root: Path, period: str, files: list[tuple[str, bytes]]) -> tuple[Path, bool]:
    """The month's export directory: the latest version if its files are the same bytes,
    else a new version ``v<NNN>`` written in full beside it (renamed into place at once)."""
    month = root / period
    month.mkdir(parents=True, exist_ok=True)
    versions = sorted(p for p in month.iterdir() if p.is_dir() and p.name.startswith("v"))
    wanted = {name: hashlib.sha256(data).hexdigest() for name, data in files}
    if versions:
        latest = versions[-1]
        have = {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in latest.iterdir()
            if p.is_file()
        }
        if have == wanted:
            return latest, False
    target = month / f"v{len(versions) + 1:03d}"
    staging = month / f".{target.name}.{uuid.uuid4().hex}.tmp"
    staging.mkdir()
    try:
        for name, data in files:
            (staging / name).write_bytes(data)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target, True


def parts_balance(parts: pl.DataFrame) -> CheckOutcome:
    totals = parts.group_by("part_id").agg(
        lines=pl.len(),
        debit=pl.col("debit").sum(),
        credit=pl.col("credit").sum(),
        functional_debit=pl.col("functional_debit").sum(),
        functional_credit=pl.col("functional_credit").sum(),
    )
    broken = totals.filter(
        (pl.col("debit") != pl.col("credit"))
        | (pl.col("functional_debit") != pl.col("functional_credit"))
    ).sort("part_id")
    return CheckOutcome(
        passed=broken.height == 0,
        description=(
            f"{broken.height} exported journal part(s) unbalanced"
            if broken.height
            else f"all {totals.height} exported journal parts balance in both currencies"
        ),
        metadata={"parts": totals.height, "unbalanced": markdown_table(broken)},
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ERP_EXPORTS,
            description=(
                "ERP import files of the month (NetSuite, Oracle FBDI, generic) + manifest."
            ),
            group_name="close",
            kinds={"csv", "parquet"},
            deps=[JOURNAL_LINES],
            skippable=True,
        )
    ],
    partitions_def=close_monthly_partition,
    can_subset=True,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    check_specs=[
        dg.AssetCheckSpec(
            names.ERP_EXPORTS_BALANCE,
            asset=ERP_EXPORTS,
            blocking=True,
            description="Every exported journal part balances in both currencies.",
        )
    ],
)
def erp_exports(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, control_db: ControlDbResource
) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]:
    month = open_month(context, control_db)
    if month is None:
        return
    period, first = month.period, month.first
    store = warehouse.get()
    lines = pl.read_parquet(store.partition_path(JOURNAL_LINES, period))
    # As NetSuite takes them (split by size and rate) and as Oracle does (by size): checked
    # before a version is written, so no unbalanced file is ever offered for import.
    netsuite = parts_balance(split_journals(lines, LINE_LIMITS["netsuite"], by_rate=True))
    oracle = parts_balance(split_journals(lines, LINE_LIMITS["oracle"]))
    balance = check_result(
        names.ERP_EXPORTS_BALANCE, dg.AssetKey(ERP_EXPORTS), [(first, netsuite), (first, oracle)]
    )
    yield balance
    if failed_checks([balance]):
        raise dg.Failure(
            description=f"no export version written for {period}: {balance.description}",
            allow_retries=False,
        )
    files, manifest = render_all(lines, period)
    payload = [(f.name, f.data) for f in files]
    payload.append(("manifest.json", manifest_bytes(manifest)))
    directory, written = write_version(store.root / "exports", period, payload)
    context.log.info(
        f"{'wrote' if written else 'unchanged:'} {directory} ({len(files)} files, "
        f"{manifest['journal_lines']} journal lines)"
    )
    yield dg.MaterializeResult(
        asset_key=ERP_EXPORTS,
        metadata={
            "period": period,
            "version": directory.name,
            "new_version": written,
            "files": dg.MetadataValue.md(
                markdown_table(pl.DataFrame(manifest["files"]).select("name", "rows", "sha256"))
            ),
            "path": dg.MetadataValue.path(str(directory)),
            "manifest": dg.MetadataValue.json(json.loads(manifest_bytes(manifest))),
        },
    )
