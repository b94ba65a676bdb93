"""Where meterclose reads and writes, resolved once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from resources.base import ConfigurableResource

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LATENESS_DAYS = 35
# The sample's first landing day: daily and monthly partitions start here unless
# METERCLOSE_FIRST_DAY says otherwise, so a missing partition is never "not applicable".
DEFAULT_FIRST_DAY = date(2026, 9, 1)
# The month-end close fires on this day of the next month (06:00 UTC); the landing
# calendar of a month ends the day before.
DEFAULT_CLOSE_DAY = 5


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
    # The product's clock: where partitions end, which months can close, which period is
    # open. None: the wall clock (production); tests and replays set METERCLOSE_TODAY.
    today_override: date | None = None
    first_day: date = DEFAULT_FIRST_DAY
    close_day: int = DEFAULT_CLOSE_DAY
    # Days of the next month in a month's landing calendar (default: through the day
    # before the month-end close fires).
    landing_cutoff_days: int = DEFAULT_CLOSE_DAY - 1
    # A landing day's quarantined share of its lines: a warning above the first, an error
    # above the second (its month then closes only once a controller confirmed the day).
    quarantine_warn_rate: float = 0.01
    quarantine_error_rate: float = 0.05
    # A landing day is late when it has no files by this hour (UTC) of the next day.
    landing_deadline_hour: int = 6
    # How many calendar days older than the day asked for an FX quote may be (0: none, the
    # day's own quote is required; a feed that skips weekends needs 2 or 3).
    fx_fallback_max_age_days: int = 0
    # The approver of a close must not be its preparer (off for one-person teams).
    segregation_of_duties: bool = True
    # Who the month-end schedule records as the preparer of the closes it starts.
    schedule_preparer: str = "meterclose-schedule"

    def today(self) -> date:
        """Today on the product's clock."""
        return self.today_override or datetime.now(UTC).date()

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


def _date_env(name: str) -> date | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"environment variable {name}={raw!r}: expected a day as YYYY-MM-DD"
        ) from None


def _bounded_int_env(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"environment variable {name}={raw!r}: expected {low} to {high}")
    return int(raw)


def _switch_env(name: str, default: bool) -> bool:
    raw = (os.environ.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw not in ("on", "off"):
        raise ValueError(f"environment variable {name}={raw!r}: expected on or off")
    return raw == "on"


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
    close_day = _bounded_int_env("METERCLOSE_CLOSE_DAY", DEFAULT_CLOSE_DAY, 1, 28)
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
        today_override=_date_env("METERCLOSE_TODAY"),
        first_day=_date_env("METERCLOSE_FIRST_DAY") or DEFAULT_FIRST_DAY,
        close_day=close_day,
        landing_cutoff_days=_bounded_int_env(
            "METERCLOSE_LANDING_CUTOFF_DAYS", close_day - 1, 0, 27
        ),
        quarantine_warn_rate=_fraction_env("METERCLOSE_QUARANTINE_WARN_RATE", 0.01),
        quarantine_error_rate=_fraction_env("METERCLOSE_QUARANTINE_ERROR_RATE", 0.05),
        landing_deadline_hour=_bounded_int_env("METERCLOSE_LANDING_DEADLINE_HOUR", 6, 0, 23),
        fx_fallback_max_age_days=_bounded_int_env("METERCLOSE_FX_FALLBACK_MAX_AGE_DAYS", 0, 0, 31),
        segregation_of_duties=_switch_env("METERCLOSE_SEGREGATION_OF_DUTIES", True),
        schedule_preparer=os.environ.get("METERCLOSE_SCHEDULE_PREPARER") or "meterclose-schedule",
    )


def _fraction_env(name: str, default: float) -> float:
    value = _rate_env(name, default)
    if value > 1:
        raise ValueError(f"environment variable {name}={value!r}: expected a fraction 0 to 1")
    return value


class SettingsResource(ConfigurableResource):
    """The settings the close's rules read (paths, clock, calendar, policies), handed to
    assets and ops as a resource so a run uses the settings it was launched with."""

    data_dir: str
    warehouse_dir: str
    control_db_url: str
    reference_url: str = ""
    lateness_days: int = DEFAULT_LATENESS_DAYS
    erp_kind: str = "none"
    today: str = ""  # YYYY-MM-DD; empty: the wall clock
    first_day: str = DEFAULT_FIRST_DAY.isoformat()
    close_day: int = DEFAULT_CLOSE_DAY
    landing_cutoff_days: int = DEFAULT_CLOSE_DAY - 1
    quarantine_warn_rate: float = 0.01
    quarantine_error_rate: float = 0.05
    landing_deadline_hour: int = 6
    fx_fallback_max_age_days: int = 0
    segregation_of_duties: bool = True
    schedule_preparer: str = "meterclose-schedule"

    @classmethod
    def of(cls, settings: Settings) -> SettingsResource:
        return cls(
            data_dir=str(settings.data_dir),
            warehouse_dir=str(settings.warehouse_dir),
            control_db_url=settings.control_db_url,
            reference_url=settings.reference_url or "",
            lateness_days=settings.lateness_days,
            erp_kind=settings.erp_kind,
            today=settings.today_override.isoformat() if settings.today_override else "",
            first_day=settings.first_day.isoformat(),
            close_day=settings.close_day,
            landing_cutoff_days=settings.landing_cutoff_days,
            quarantine_warn_rate=settings.quarantine_warn_rate,
            quarantine_error_rate=settings.quarantine_error_rate,
            landing_deadline_hour=settings.landing_deadline_hour,
            fx_fallback_max_age_days=settings.fx_fallback_max_age_days,
            segregation_of_duties=settings.segregation_of_duties,
            schedule_preparer=settings.schedule_preparer,
        )

    def get(self) -> Settings:
        return Settings(
            data_dir=Path(self.data_dir),
            warehouse_dir=Path(self.warehouse_dir),
            control_db_url=self.control_db_url,
            reference_url=self.reference_url or None,
            lateness_days=self.lateness_days,
            erp_kind=self.erp_kind,
            today_override=date.fromisoformat(self.today) if self.today else None,
            first_day=date.fromisoformat(self.first_day),
            close_day=self.close_day,
            landing_cutoff_days=self.landing_cutoff_days,
            quarantine_warn_rate=self.quarantine_warn_rate,
            quarantine_error_rate=self.quarantine_error_rate,
            landing_deadline_hour=self.landing_deadline_hour,
            fx_fallback_max_age_days=self.fx_fallback_max_age_days,
            segregation_of_duties=self.segregation_of_duties,
            schedule_preparer=self.schedule_preparer,
        )
