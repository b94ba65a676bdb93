"""Jobs: what the schedules, sensors and the CLI launch."""

from __future__ import annotations

import dagster as dg

from dagster_project.partitions import close_monthly_partition, usage_daily_partition

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest"),
    partitions_def=usage_daily_partition,
    description="Ingest landing days into usage_events (+ quarantine, duplicates) and daily_usage.",
)

close_job = dg.define_asset_job(
    "close_job",
    selection=dg.AssetSelection.groups("billing", "close"),
    partitions_def=close_monthly_partition,
    description=(
        "Close a month: rate its usage under the contract terms in force (billable_usage), "
        "issue its invoices and credit memos (invoice_lines, prepaid_balances), schedule "
        "revenue (revenue_schedule) and book balanced journals (journal_lines); each step "
        "gated by the blocking checks of the one before."
    ),
)
