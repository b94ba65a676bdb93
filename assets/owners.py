"""Who answers for each part of the pipeline, as Dagster owners (``team:`` names)."""

# Landing, ingest and the platform that runs them.
DATA_ENGINEERING = "team:data-engineering"
# The month's close: rating through journals, reconciliation and publication.
FINANCE_CLOSE = "team:finance-close"
