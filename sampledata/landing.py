"""The landing files: each landing day's lines split over 2-4 NDJSON files, some gzip, written
byte for byte the same for the same lines (gzip members without name or mtime)."""

from __future__ import annotations

import struct
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from sampledata.days import to_date
from sampledata.faults import BAD_BYTES

GZIP_LEVEL = 6
_GZ_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0, OS unknown


def gzip_bytes(data: bytes) -> bytes:
    c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15, 9)
    body = c.compress(data) + c.flush()
    return (
        _GZ_HEADER
        + body
        + struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    )


def _write_file(path: Path, data: bytes, gz: bool) -> int:
    if gz:
        data = gzip_bytes(data)
    path.write_bytes(data)
    return len(data)


def text_bytes(lines: pl.Series, patch: bool) -> bytes:
    """Lines joined with a newline after each, as UTF-8 bytes (invalid bytes patched in)."""
    arr = (lines + "\n").to_arrow().cast(pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
        arr.offset : arr.offset + len(arr) + 1
    ]
    data = arr.buffers()[2].to_pybytes()[int(offsets[0]) : int(offsets[-1])] if len(arr) else b""
    if patch:
        for ch, bad in BAD_BYTES.items():
            data = data.replace(ch.encode("utf-8"), bad)
    return data


class LandingWriter:
    """Writes landing days under ``root`` (emptied first), on two threads, at most two days
    in flight; ``files`` records each file's lines and whether it is gzip."""

    def __init__(self, root: Path) -> None:
        if root.exists():
            for p in sorted(root.rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.files: dict[str, dict[str, Any]] = {}
        self._any_gz = False
        self._executor = ThreadPoolExecutor(max_workers=2)
        self._in_flight: list[list[Future[int]]] = []

    def write_day(
        self, rng: np.random.Generator, day: int, pool: pl.DataFrame
    ) -> tuple[list[str], npt.NDArray[np.int64]]:
        """Split the day's lines, in order, over 2-4 files; return their names and sizes.
        The first file is never gzip, and the first day with two files has a gzip one."""
        nl = pool.height
        nf = min(int(rng.integers(2, 5)), nl)
        sizes = 1 + rng.multinomial(nl - nf, rng.dirichlet(np.full(nf, 3.0)))
        gz = [False] + [bool(x) for x in rng.random(nf - 1) < 0.5]
        if not self._any_gz and nf > 1:
            gz[1] = True
        self._any_gz = self._any_gz or any(gz)
        ds = to_date(day).isoformat()
        (self.root / ds).mkdir(parents=True, exist_ok=True)
        names = [f"{ds}/events-{i:02d}.ndjson" + (".gz" if gz[i] else "") for i in range(nf)]
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        futures = []
        for i in range(nf):
            chunk = pool.slice(int(bounds[i]), int(sizes[i]))
            patch = bool((chunk["fault"] == "invalid_encoding").any())
            data = text_bytes(chunk["line"], patch)
            futures.append(self._executor.submit(_write_file, self.root / names[i], data, gz[i]))
            self.files[names[i]] = {"lines": int(sizes[i]), "gzip": gz[i]}
        self._in_flight.append(futures)
        while len(self._in_flight) > 2:
            for f in self._in_flight.pop(0):
                f.result()
        return names, sizes

    def finish(self) -> None:
        """Wait for every file to be written (and raise the first error)."""
        for futures in self._in_flight:
            for f in futures:
                f.result()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
