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
    # The ERP approved journals are published to ('none': import files only). Its
    # password is read from METERCLOSE_ERP_PASSWORD when publishing, never kept here.
    erp_kind: str = "none"
    erp_url: str = ""
    erp_database: str = ""
    erp_login: str = ""
    erp_rate_per_second: float = 20.0
    erp_concurrency: int = 2
    erp_batch_size: int = 100
    # Where canonical business events are delivered ('' for nowhere: they wait in the
    # outbox); the signing secret is read from METERCLOSE_WEBHOOK_SECRET when sending.
    webhook_url: str = ""

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


def _choice_env(name: str, choices: tuple[str, ...], default: str) -> str:
    raw = os.environ.get(name) or default
    if raw not in choices:
        raise ValueError(
            f"environment variable {name}={raw!r}: expected one of {', '.join(choices)}"
        )
    return raw


def _rate_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r}: expected a number") from None
    if value < 0:
        raise ValueError(f"environment variable {name}={raw!r}: expected 0 (no limit) or more")
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
        erp_kind=_choice_env("METERCLOSE_ERP", ("none", "tryton"), "none"),
        erp_url=os.environ.get("METERCLOSE_ERP_URL", ""),
        erp_database=os.environ.get("METERCLOSE_ERP_DATABASE", ""),
        erp_login=os.environ.get("METERCLOSE_ERP_LOGIN", ""),
        erp_rate_per_second=_rate_env("METERCLOSE_ERP_RATE_PER_SECOND", 20.0),
        erp_concurrency=_int_env("METERCLOSE_ERP_CONCURRENCY", 2),
        erp_batch_size=_int_env("METERCLOSE_ERP_BATCH_SIZE", 100),
        webhook_url=os.environ.get("METERCLOSE_WEBHOOK_URL", ""),
    )
