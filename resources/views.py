"""DuckDB views over the Parquet warehouse, in ``warehouse/meterclose.duckdb``.

DuckDB allows one writer per file and Dagster runs steps in parallel, so no asset writes
this file: the views are refreshed here, by the command line, after its runs finish.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

DATABASE = "meterclose.duckdb"


def refresh_views(warehouse_dir: Path) -> list[str]:
    """One view per table that has partitions; views read the Parquet files live."""
    tables = (
        sorted(p.name for p in warehouse_dir.iterdir() if p.is_dir() and any(p.glob("*.parquet")))
        if warehouse_dir.is_dir()
        else []
    )
    con = duckdb.connect(str(warehouse_dir / DATABASE))
    try:
        for table in tables:
            pattern = str(warehouse_dir / table / "*.parquet").replace("'", "''")
            # DDL cannot take bound parameters; the path is ours and quoted above.
            con.execute(
                f"CREATE OR REPLACE VIEW \"{table}\" AS SELECT * FROM read_parquet('{pattern}')"
            )
    finally:
        con.close()
    return tables
