"""The landing area for usage telemetry: ``<root>/YYYY-MM-DD/*.ndjson[.gz]``."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from io import BufferedIOBase
from pathlib import Path

from rating.errors import LandingFileError
from rating.ingest import IngestRules, LandingFile
from resources.base import ConfigurableResource

LANDING_SUFFIXES = (".ndjson", ".ndjson.gz")


_CHUNK = 1 << 20


def _open(path: Path) -> BufferedIOBase:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def count_lines(path: Path) -> int:
    """Lines in a landing file, gzip undone, counted as ingest counts them (a last line
    without its newline counts), streamed in 1 MiB chunks so memory stays flat."""
    count, last = 0, b"\n"
    with _open(path) as stream:
        while chunk := stream.read(_CHUNK):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (0 if last == b"\n" else 1)


@dataclass(frozen=True)
class LandedDay:
    """What has landed for one day, as observed: the landing source asset's metadata."""

    day: date
    files: int
    lines: int
    bytes: int
    last_arrival: datetime | None
    signature: str


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

    def landed(self, day: date) -> LandedDay:
        """The day's files, lines, bytes and last arrival (the newest modification time)."""
        files = self.files(day)
        stats = [f.path.stat() for f in files]
        return LandedDay(
            day=day,
            files=len(files),
            lines=sum(count_lines(f.path) for f in files),
            bytes=sum(st.st_size for st in stats),
            last_arrival=(
                datetime.fromtimestamp(max(st.st_mtime for st in stats), UTC) if stats else None
            ),
            signature=self.signature(day),
        )


class LandingResource(ConfigurableResource):
    """Where telemetry lands, one folder per landing day."""

    root: str

    def get(self) -> Landing:
        return Landing(Path(self.root))


class IngestRulesResource(ConfigurableResource):
    """Ingest policy: the lateness limit in days, which is also the deduplication window."""

    lateness_days: int = 35

    def get(self) -> IngestRules:
        return IngestRules(lateness_days=self.lateness_days)
