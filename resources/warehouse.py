"""The Parquet warehouse: one file per table and partition, replaced whole, never appended."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from rating.ingest import connect
from resources.base import ConfigurableResource

# Fixed writer settings: a rerun of a partition must produce the same bytes.
_PARQUET_OPTIONS = {
    "compression": "zstd",
    "compression_level": 3,
    "row_group_size": 1_000_000,
    "write_statistics": True,
}


class Warehouse:
    """Paths and atomic writes under ``<warehouse>/<table>/<partition>.parquet``."""

    def __init__(self, root: Path, memory_limit: str | None = None) -> None:
        self.root = root
        self.memory_limit = memory_limit

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """A step's own in-memory DuckDB, memory-bounded, spilling under the warehouse."""
        return connect(memory_limit=self.memory_limit, temp_directory=self.root / ".spill")

    def table_dir(self, table: str) -> Path:
        return self.root / table

    def partition_path(self, table: str, partition: date | str) -> Path:
        key = partition.isoformat() if isinstance(partition, date) else partition
        return self.table_dir(table) / f"{key}.parquet"

    def partitions(self, table: str) -> list[str]:
        directory = self.table_dir(table)
        if not directory.is_dir():
            return []
        return sorted(p.stem for p in directory.glob("*.parquet"))

    def existing(self, table: str, partitions: list[date]) -> list[Path]:
        paths = [self.partition_path(table, p) for p in partitions]
        return [p for p in paths if p.exists()]

    def file_metadata(self, path: Path, key: str) -> str | None:
        """A key-value entry of a Parquet file's footer (written with the data, atomically)."""
        metadata = pq.read_metadata(path).metadata or {}
        value = metadata.get(key.encode())
        return value.decode() if value is not None else None

    def write(
        self,
        tables: Mapping[str, tuple[date | str, pa.Table]],
        options: Mapping[str, Mapping[str, object]] | None = None,
    ) -> dict[str, Path]:
        """Write several tables' partitions: all to temporary files first, then rename each.

        A failure before the renames leaves every earlier version in place; a rename is
        atomic on one filesystem, so a reader never sees half a file. ``options`` adds
        writer settings for a table (fixed ones: reruns must give the same bytes).
        """
        staged: list[tuple[Path, Path]] = []
        try:
            for table, (partition, data) in tables.items():
                final = self.partition_path(table, partition)
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
                settings = {**_PARQUET_OPTIONS, **(options or {}).get(table, {})}
                pq.write_table(data, tmp, **settings)
                staged.append((tmp, final))
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise
        for tmp, final in staged:
            os.replace(tmp, final)
        return {table: final for (table, _), (_, final) in zip(tables.items(), staged, strict=True)}


class WarehouseResource(ConfigurableResource):
    """Where the Parquet tables and the DuckDB views live."""

    root: str
    # DuckDB's memory per step (it spills beyond it); Dagster may run steps side by side.
    memory_limit: str = "2GB"

    def get(self) -> Warehouse:
        return Warehouse(Path(self.root), self.memory_limit)
