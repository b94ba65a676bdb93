"""The landing area for usage telemetry: ``<root>/YYYY-MM-DD/*.ndjson[.gz]``."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import dagster as dg

from rating.errors import LandingFileError
from rating.ingest import IngestRules, LandingFile

LANDING_SUFFIXES = (".ndjson", ".ndjson.gz")


class Landing:
    def __init__(self, root: Path) -> None:
        self.root = root

    def days(self) -> list[date]:
        """Landing days that have a folder, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            try:
                day = date.fromisoformat(entry.name)
            except ValueError:
                day = None
            # Python also reads "20260904" as a date; only the canonical name is a landing
            # day, and anything else that looks like one is an error, not something to skip.
            if day is None or entry.name != day.isoformat():
                raise LandingFileError(
                    entry.name, "unexpected folder in the landing area: expected YYYY-MM-DD"
                )
            found.append(day)
        return sorted(found)

    def files(self, day: date) -> list[LandingFile]:
        """The day's landing files; an unexpected file fails loudly rather than being skipped.

        Names starting with a dot are uploads still in flight (the usual convention of
        object-store sync tools) and are left for the next run.
        """
        folder = self.root / day.isoformat()
        if not folder.is_dir():
            return []
        files = []
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            name = f"{day.isoformat()}/{entry.name}"
            if not entry.is_file() or not entry.name.endswith(LANDING_SUFFIXES):
                raise LandingFileError(
                    name,
                    f"unexpected in the landing area: expected {' or '.join(LANDING_SUFFIXES)}",
                )
            files.append(LandingFile(name=name, path=entry))
        return files

    def signature(self, day: date) -> str:
        """Names, sizes and modification times of the day's files: cheap, and it changes
        when files land or are corrected in place."""
        h = hashlib.sha256()
        folder = self.root / day.isoformat()
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                if entry.is_file() and not entry.name.startswith("."):
                    stat = entry.stat()
                    h.update(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        return h.hexdigest()[:16]


class LandingResource(dg.ConfigurableResource):  # type: ignore[misc]
    """Where telemetry lands, one folder per landing day."""

    root: str

    def get(self) -> Landing:
        return Landing(Path(self.root))


class IngestRulesResource(dg.ConfigurableResource):  # type: ignore[misc]
    """Ingest policy: the lateness limit in days, which is also the deduplication window."""

    lateness_days: int = 35

    def get(self) -> IngestRules:
        return IngestRules(lateness_days=self.lateness_days)
