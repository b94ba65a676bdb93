"""DuckDB views over the Parquet warehouse, in ``warehouse/meterclose.duckdb``.

DuckDB allows one writer per file and Dagster runs steps in parallel, so no asset writes
this file: the views are refreshed here, by the command line, after its runs finish.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

DATABASE = "meterclose.duckdb"
UNIONED = ("erp_reconciliation", "erp_exceptions")


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
            # The close's reconciliation and exception queue include the ERP's: one place
            # for a controller to look (erp_* views show the ERP's part alone).
            sources = [table, *([f"erp_{table}"] if f"erp_{table}" in UNIONED else [])]
            patterns = ", ".join(
                "'" + str(warehouse_dir / source / "*.parquet").replace("'", "''") + "'"
                for source in sources
                if source in tables
            )
            # DDL cannot take bound parameters; the paths are ours and quoted above.
            con.execute(
                f'CREATE OR REPLACE VIEW "{table}" AS SELECT * FROM '
                f"read_parquet([{patterns}], union_by_name = true)"
            )
    finally:
        con.close()
    return tables
