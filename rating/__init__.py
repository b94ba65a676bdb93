"""Pure, engine-level rating code: parsing, pricing and aggregation over Polars and DuckDB.

Nothing in this package imports Dagster: it is tested in milliseconds and reused by
assets, the CLI and the benchmarks alike.
"""
