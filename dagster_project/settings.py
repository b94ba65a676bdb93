"""Where meterclose reads and writes, resolved once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LATENESS_DAYS = 35


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    warehouse_dir: Path
    control_db_url: str
    reference_url: str | None
    lateness_days: int
    duckdb_memory_limit: str = "2GB"

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing" / "usage"

    @property
    def reference_dir(self) -> Path:
        return self.data_dir / "reference"


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r}: expected a whole number") from None
    if value < 1:
        raise ValueError(f"environment variable {name}={raw!r}: expected 1 or more")
    return value


def load_settings(data_dir: str | Path | None = None) -> Settings:
    """The one place that turns the environment into paths and URLs."""
    root = Path(data_dir or os.environ.get("METERCLOSE_DATA_DIR") or REPO_ROOT / "data").resolve()
    warehouse = Path(os.environ.get("METERCLOSE_WAREHOUSE_DIR") or root / "warehouse").resolve()
    control = os.environ.get("METERCLOSE_CONTROL_DB_URL") or f"sqlite:///{root / 'control.db'}"
    return Settings(
        data_dir=root,
        warehouse_dir=warehouse,
        control_db_url=control,
        reference_url=os.environ.get("METERCLOSE_REFERENCE_URL") or None,
        lateness_days=_int_env("METERCLOSE_LATENESS_DAYS", DEFAULT_LATENESS_DAYS),
        duckdb_memory_limit=os.environ.get("METERCLOSE_DUCKDB_MEMORY_LIMIT") or "2GB",
    )
