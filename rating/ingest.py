"""One landing day of CloudEvents NDJSON → accepted usage events, duplicates and quarantine.

Every landing line ends in exactly one of three places. Lines are read as bytes and split
vectorised (PyArrow), then decoded and parsed with DuckDB's tolerant JSON functions:
readers such as ``read_json`` stop at, or silently drop, bad lines and lose line numbers,
and a controller needs both to trace a rejected event back to the file it came in.

A day is classified in one pass on its own (``classify_day``), then settled against the
key index of the landing days before it (``settle_day``), so a caller can overlap the two
with other days' work.
"""

from __future__ import annotations

import gzip
import hashlib
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rating.errors import LandingFileError
from rating.meters import Meter

# Reason codes, in the order they are tested: a line gets the first that applies. Faults
# that no reference-data change can mend come first, so a quarantined line's reason stays
# true after a fix; unknown_customer is last because adding the customer is the usual fix.
REASONS: dict[str, str] = {
    "invalid_encoding": "the line is not valid UTF-8",
    "empty_line": "the line is empty or only whitespace",
    "invalid_json": "the line is not valid JSON",
    "not_an_object": "the line is JSON but not an object",
    "missing_field": "a required CloudEvents attribute is missing, null or empty",
    "invalid_field": "a CloudEvents attribute has the wrong type or format",
    "unknown_event_type": "no meter takes this event type",
    "too_late": "event_time is more than the lateness limit before the landing day",
    "future_time": "event_time is more than a day after the landing day",
    "invalid_value": "a meter's value property is missing or not a number",
    "negative_value": "a meter's value is negative",
    "unknown_customer": "the subject is not a known customer",
}
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type", "subject", "time")
_BATCH_ROWS = 32_768
# A decimal number as text: no spaces, digit separators, hex, NaN or infinity.
_NUMBER = r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$"
# Quantities carry 12 decimal places: enough for fractional GB-hours and exact money.
QUANTITY_TYPE = "DECIMAL(38,12)"
# RFC 3339 demands an explicit offset; DuckDB alone would read a bare local time as UTC.
# Whitespace as JSON knows it, plus vertical tab and form feed: a line of only these is empty.
_WHITESPACE = "(chr(32) || chr(9) || chr(10) || chr(13) || chr(11) || chr(12))"
# Hours 00-23 and minutes 00-59 here, because DuckDB's cast would roll T24:00 into the next
# day and read an offset of +05:99; leap seconds (:60) are refused for the same reason.
_RFC3339 = (
    r"^\d{4}-\d{2}-\d{2}[Tt ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?"
    r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)


@dataclass(frozen=True)
class IngestRules:
    lateness_days: int = 35
    # An event stamped at or after landing day + future_days (00:00 UTC) is from a broken
    # clock, not from the future: two days leaves room for time zones and clock skew.
    future_days: int = 2

    def dedup_window(self, received_date: date) -> tuple[date, date]:
        """Landing days whose accepted events a copy landing on ``received_date`` can repeat.

        A copy that passes the lateness rule has event_time >= D - N days. Its original,
        valid on its own landing day L, had event_time < L + future_days. So
        L > D - N - future_days: the window is N + future_days - 1 days before D.
        """
        first = received_date - timedelta(days=self.lateness_days + self.future_days - 1)
        return first, received_date - timedelta(days=1)


@dataclass(frozen=True)
class LandingFile:
    name: str  # relative to the landing root, e.g. "2026-09-03/events-01.ndjson.gz"
    path: Path


@dataclass(frozen=True)
class FileFingerprint:
    name: str
    sha256: str
    size_bytes: int  # on disk, as the checksum
    lines: int


def file_lines(file: LandingFile) -> tuple[pa.Array, pa.Array | None, FileFingerprint]:
    """The file's lines (gzip undone), its checksum and its line count.

    Lines come as text when the whole file is valid UTF-8, the usual case, checked in one
    pass. Otherwise the lines that hold any non-ASCII byte come as bytes instead (null in
    the text), which DuckDB decodes line by line so that only the broken lines are
    quarantined.
    """
    try:
        payload = file.path.read_bytes()
    except OSError as exc:
        raise LandingFileError(file.name, f"cannot be read ({exc.strerror})") from exc
    digest = hashlib.sha256(payload).hexdigest()
    size = len(payload)
    if file.name.endswith(".gz"):
        try:
            payload = gzip.decompress(payload)
        except (OSError, EOFError, zlib.error) as exc:
            raise LandingFileError(file.name, f"is not a readable gzip file ({exc})") from exc
    # Some exporters start files with a UTF-8 byte order mark; it is not part of line 1.
    body = pa.py_buffer(payload)
    if payload.startswith(b"\xef\xbb\xbf"):
        body = body.slice(3)
    whole = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), 1, [None, pa.array([0, body.size], pa.int64()).buffers()[1], body]
    )
    lines = pc.split_pattern(whole, b"\n").flatten()
    # A final newline ends the last line; it does not start another, empty one.
    count = len(lines) - (1 if body.size == 0 or payload.endswith(b"\n") else 0)
    lines = lines.slice(0, count)
    fingerprint = FileFingerprint(file.name, digest, size, count)
    try:
        return lines.cast(pa.large_string()), None, fingerprint
    except pa.ArrowInvalid:
        pass
    non_ascii = _non_ascii(lines)
    return (
        _only(lines, ~non_ascii, pa.large_string()),
        _only(lines, non_ascii, pa.large_binary()),
        fingerprint,
    )


def _non_ascii(lines: pa.LargeBinaryArray) -> np.ndarray:
    """Which lines hold a byte above 0x7F: one pass over the bytes eight at a time, then
    a lookup of each such byte's line among the line offsets."""
    first, count = lines.offset, len(lines)
    offsets = np.frombuffer(lines.buffers()[1], np.int64)[first : first + count + 1]
    data = np.frombuffer(lines.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    whole = data.size // 8 * 8
    words = np.flatnonzero(data[:whole].view(np.uint64) & np.uint64(0x8080808080808080))
    candidates = (words[:, None] * 8 + np.arange(8)).ravel()
    high = np.concatenate(
        [candidates[data[candidates] >= 0x80], np.flatnonzero(data[whole:] >= 0x80) + whole]
    )
    flags = np.zeros(count, dtype=bool)
    flags[np.searchsorted(offsets, high + offsets[0], side="right") - 1] = True
    return flags


def _only(lines: pa.LargeBinaryArray, keep: np.ndarray, kind: pa.DataType) -> pa.Array:
    """The lines where ``keep`` holds, null elsewhere: the same buffers under a validity
    bitmap, so no line is copied. Null slots are never read, whatever bytes they hold."""
    bits = np.concatenate([np.zeros(lines.offset, dtype=bool), keep])
    return pa.Array.from_buffers(
        kind,
        len(lines),
        [pa.py_buffer(np.packbits(bits, bitorder="little")), *lines.buffers()[1:]],
        null_count=int(keep.size - np.count_nonzero(keep)),
        offset=lines.offset,
    )


def read_landing(files: Sequence[LandingFile]) -> tuple[pa.Table, list[FileFingerprint]]:
    """All lines of a landing day as (file, line_no, raw, line), every file read first.

    ``raw`` is the line's text; ``line`` holds the bytes of the non-ASCII lines of files
    that are not valid UTF-8 throughout, where ``raw`` is null. Files are read on a small
    thread pool: gzip and hashing let go of the GIL.
    """
    ordered = sorted(files, key=lambda f: f.name)
    with ThreadPoolExecutor(max_workers=min(4, len(ordered) or 1)) as pool:
        read = list(pool.map(file_lines, ordered))
    schema = pa.schema(
        [
            ("file", pa.string()),
            ("line_no", pa.int64()),
            ("raw", pa.large_string()),
            ("line", pa.large_binary()),
        ]
    )
    tables = [
        pa.table(
            [
                pc.fill_null(pa.nulls(len(lines), pa.string()), file.name),
                pa.array(np.arange(1, len(lines) + 1, dtype=np.int64)),
                lines,
                raw_bytes if raw_bytes is not None else pa.nulls(len(lines), pa.large_binary()),
            ],
            schema=schema,
        )
        for file, (lines, raw_bytes, _) in zip(ordered, read, strict=True)
    ]
    fingerprints = [fingerprint for _, _, fingerprint in read]
    lines = pa.concat_tables(tables) if tables else schema.empty_table()
    # The line's position in the day, in (file, line_no) order: one integer to join and
    # order lines by.
    lines = lines.append_column("rid", pa.array(np.arange(lines.num_rows, dtype=np.int64)))
    schema = lines.schema
    # DuckDB scans an Arrow table in parallel by record batch; a file's lines arrive as one
    # batch, so they are cut into slices (zero-copy) to keep both cores busy.
    return (
        pa.Table.from_batches(lines.to_batches(max_chunksize=_BATCH_ROWS), schema=schema),
        fingerprints,
    )


def batch_id(received_date: date, fingerprints: Sequence[FileFingerprint]) -> str:
    """A deterministic id for a landing day's set of files: same files, same id."""
    h = hashlib.sha256(received_date.isoformat().encode())
    for fp in sorted(fingerprints, key=lambda f: f.name):
        h.update(f"\x1f{fp.name}\x1e{fp.sha256}".encode())
    return f"ib-{received_date:%Y%m%d}-{h.hexdigest()[:12]}"


def meters_table(meters: Sequence[Meter]) -> pa.Table:
    """Meters as a table to join events against; group names are sorted, so dims are canonical."""
    return pa.table(
        {
            "meter": pa.array([m.slug for m in meters], pa.string()),
            "event_type": pa.array([m.event_type for m in meters], pa.string()),
            "aggregation": pa.array([m.aggregation.value for m in meters], pa.string()),
            "value_property": pa.array([m.value_property for m in meters], pa.string()),
            "dim_names": pa.array([list(m.group_by) for m in meters], pa.list_(pa.string())),
            "dim_paths": pa.array(
                [list(m.group_by.values()) for m in meters], pa.list_(pa.string())
            ),
        }
    )


@dataclass
class DayResult:
    usage_events: pa.Table
    quarantined_events: pa.Table
    duplicate_events: pa.Table
    per_file: pa.Table  # file, raw_lines, accepted, duplicates, quarantined
    accepted_keys_digest: str
    key_index: pa.Table  # the day's accepted events, for the window of the days after it
    timings: dict[str, float]  # seconds per stage, for metadata and the benchmark

    @property
    def accepted(self) -> int:
        return int(pc.sum(self.per_file["accepted"]).as_py() or 0)

    @property
    def duplicates(self) -> int:
        return int(self.duplicate_events.num_rows)

    @property
    def quarantined(self) -> int:
        return int(self.quarantined_events.num_rows)

    @property
    def raw_lines(self) -> int:
        return int(pc.sum(self.per_file["raw_lines"]).as_py() or 0)


# One pass over the day's lines: every line gets its CloudEvents attributes or a reason,
# and each event a meter takes gets that meter's value — one row per line, or per line ×
# meter. Each line is parsed once (json_extract with a list of paths); the checks then work
# on the small extracted fragments: a JSON string starts with a quote, null is 'null'.
# ``rid`` is the line's position in the day (files by name, then line number): it orders
# and joins lines with one integer instead of (file, line_no).
_CLASSIFY = f"""
CREATE OR REPLACE TEMP TABLE classified AS
WITH decoded AS (
    SELECT rid,
        CASE WHEN raw IS NOT NULL THEN raw ELSE try(decode(line)) END AS text
    FROM lines
), shaped AS (
    SELECT rid,
        CASE WHEN ends_with(text, chr(13)) THEN rtrim(text, chr(13)) ELSE text END AS raw
    FROM decoded
), valid AS (
    SELECT rid, raw,
        raw IS NOT NULL AND json_valid(raw) AS is_json
    FROM shaped
), objects AS (
    SELECT rid, raw, is_json,
        -- Almost every line starts with its brace; only the rest pay for a trim.
        CASE WHEN NOT is_json THEN false
             WHEN starts_with(raw, '{{') THEN true
             ELSE starts_with(ltrim(raw, {_WHITESPACE}), '{{') END AS is_object
    FROM valid
), fields AS (
    SELECT rid, raw, is_json, is_object,
        CASE WHEN is_object THEN
            json_extract(raw, ['$.specversion', '$.id', '$.source', '$.type', '$.subject',
                               '$.time', '$.data'])
        END AS fx
    FROM objects
), attrs AS (
    SELECT rid, raw, is_json, is_object,
        fx[1] AS j_specversion, fx[2] AS j_id, fx[3] AS j_source, fx[4] AS j_type,
        fx[5] AS j_subject, fx[6] AS j_time, fx[7] AS j_data
    FROM fields
), typed AS (
    SELECT *,
        coalesce(j_specversion IN ('null', '""'), true)
            OR coalesce(j_id IN ('null', '""'), true)
            OR coalesce(j_source IN ('null', '""'), true)
            OR coalesce(j_type IN ('null', '""'), true)
            OR coalesce(j_subject IN ('null', '""'), true)
            OR coalesce(j_time IN ('null', '""'), true) AS any_missing,
        CASE WHEN starts_with(j_time, '"') THEN unquote(j_time) END AS time_text
    FROM attrs
), timed AS (
    SELECT *,
        -- Only the letters T and Z pass the pattern; most times carry them in upper case.
        CASE WHEN regexp_full_match(time_text, '{_RFC3339}')
             THEN try_cast(CASE WHEN contains(time_text, 't') OR contains(time_text, 'z')
                                THEN upper(time_text) ELSE time_text END AS TIMESTAMPTZ)
        END AS event_time
    FROM typed
), judged AS (
    SELECT *,
        CASE
            WHEN raw IS NULL THEN 'invalid_encoding'
            WHEN NOT is_json THEN
                CASE WHEN trim(raw, {_WHITESPACE}) = '' THEN 'empty_line' ELSE 'invalid_json' END
            WHEN NOT is_object THEN 'not_an_object'
            WHEN any_missing THEN 'missing_field'
            WHEN j_specversion <> '"1.0"' OR NOT starts_with(j_id, '"')
              OR NOT starts_with(j_source, '"') OR NOT starts_with(j_type, '"')
              OR NOT starts_with(j_subject, '"') OR event_time IS NULL
              OR (j_data IS NOT NULL AND j_data <> 'null' AND NOT starts_with(j_data, '{{'))
                THEN 'invalid_field'
        END AS reason
    FROM timed
), parsed AS (
    SELECT rid, reason,
        -- The detail is worked out for rejected lines only.
        CASE WHEN reason IS NOT NULL THEN
            CASE
                WHEN reason = 'invalid_encoding' THEN 'bytes are not UTF-8'
                WHEN reason = 'empty_line' THEN 'blank line'
                WHEN reason = 'invalid_json' THEN 'not parseable as JSON: ' || left(raw, 80)
                WHEN reason = 'not_an_object'
                    THEN 'JSON ' || lower(json_type(raw)) || ', expected an object'
                WHEN coalesce(j_specversion IN ('null', '""'), true) THEN 'specversion is missing'
                WHEN coalesce(j_id IN ('null', '""'), true) THEN 'id is missing'
                WHEN coalesce(j_source IN ('null', '""'), true) THEN 'source is missing'
                WHEN coalesce(j_type IN ('null', '""'), true) THEN 'type is missing'
                WHEN coalesce(j_subject IN ('null', '""'), true) THEN 'subject is missing'
                WHEN coalesce(j_time IN ('null', '""'), true) THEN 'time is missing'
                WHEN j_specversion <> '"1.0"'
                    THEN 'specversion is ' || j_specversion || ', expected "1.0"'
                WHEN NOT starts_with(j_id, '"') THEN 'id is ' || j_id || ', expected a string'
                WHEN NOT starts_with(j_source, '"')
                    THEN 'source is ' || j_source || ', expected a string'
                WHEN NOT starts_with(j_type, '"')
                    THEN 'type is ' || j_type || ', expected a string'
                WHEN NOT starts_with(j_subject, '"')
                    THEN 'subject is ' || j_subject || ', expected a string'
                WHEN event_time IS NULL
                    THEN 'time is ' || j_time || ', expected RFC 3339 with an offset'
                ELSE 'data is JSON ' || lower(json_type(j_data)) || ', expected an object'
            END
        END AS detail,
        CASE WHEN starts_with(j_id, '"') THEN unquote(j_id) END AS event_id,
        CASE WHEN starts_with(j_source, '"') THEN unquote(j_source) END AS source,
        CASE WHEN starts_with(j_type, '"') THEN unquote(j_type) END AS event_type,
        CASE WHEN starts_with(j_subject, '"') THEN unquote(j_subject) END AS customer_id,
        event_time,
        CASE WHEN starts_with(j_data, '{{') THEN j_data END AS data
    FROM judged
), keyed AS (
    SELECT p.*, cu.customer_rank,
        CASE WHEN p.reason IS NULL THEN cu.customer_rank IS NOT NULL END AS known_customer,
        -- The 128-bit event key: MD5 of (source, id) in two 64-bit halves, the same on
        -- every machine and DuckDB version; two different events share one with odds of
        -- about n^2 / 2^129, nil at any real volume.
        CASE WHEN p.reason IS NULL
             THEN md5_number(p.source || chr(31) || p.event_id) END AS k
    FROM parsed p
    LEFT JOIN customers cu ON cu.customer_id = p.customer_id AND p.reason IS NULL
), limits AS (
    SELECT CAST($too_late_before AS TIMESTAMPTZ) AS too_late_before,
           CAST($future_from AS TIMESTAMPTZ) AS future_from
), metered AS (
    -- Event type and time for lines whose structure is sound; then each meter the type
    -- feeds, one row per meter (a line a meter does not take keeps its one row).
    SELECT p.*, m.meter, m.meter_rank, m.aggregation, m.value_property,
        coalesce(m.line_head, true) AS line_head,
        CASE
            WHEN p.reason IS NOT NULL THEN p.reason
            WHEN m.meter IS NULL THEN 'unknown_event_type'
            WHEN p.event_time < l.too_late_before THEN 'too_late'
            WHEN p.event_time >= l.future_from THEN 'future_time'
        END AS line_reason,
        CASE
            WHEN p.reason IS NOT NULL THEN p.detail
            WHEN m.meter IS NULL THEN 'type ' || p.event_type || ' feeds no meter in meters.yaml'
            WHEN p.event_time < l.too_late_before
                THEN 'event_time ' || strftime(p.event_time, '%Y-%m-%dT%H:%M:%SZ')
                     || ' is before the lateness limit '
                     || strftime(l.too_late_before, '%Y-%m-%d')
            WHEN p.event_time >= l.future_from
                THEN 'event_time ' || strftime(p.event_time, '%Y-%m-%dT%H:%M:%SZ')
                     || ' is at or after ' || strftime(l.future_from, '%Y-%m-%d')
        END AS line_detail
    FROM keyed p
    CROSS JOIN limits l
    LEFT JOIN meters m ON m.event_type = p.event_type AND p.reason IS NULL
), valued AS (
    SELECT *,
        CASE WHEN line_reason IS NULL AND value_property IS NOT NULL
             THEN json_extract(data, value_property) END AS j_value
    FROM metered
), texted AS (
    -- ->> yields a scalar's text: a number as written back by DuckDB, a string unquoted.
    SELECT *, j_value ->> '$' AS value_text FROM valued
), numbers AS (
    SELECT *,
        CASE WHEN aggregation IN ('SUM', 'MAX', 'LATEST')
              AND regexp_full_match(value_text, '{_NUMBER}')
             THEN try_cast(value_text AS {QUANTITY_TYPE}) END AS number
    FROM texted
), checked AS (
    SELECT *,
        CASE WHEN line_reason IS NOT NULL THEN NULL
            WHEN aggregation IN ('SUM', 'MAX', 'LATEST') AND number IS NULL
                THEN 'expected a number or numeric string'
            -- JSON numbers arrive as doubles: from 16 significant digits on, the value read
            -- may not be the value sent. Strings carry any precision.
            -- The length tests only spare the regular expressions the short values that
            -- cannot match them (16 digits; a point and 13 digits).
            WHEN aggregation IN ('SUM', 'MAX', 'LATEST') AND NOT starts_with(j_value, '"')
             AND strlen(value_text) >= 16
             AND regexp_matches(value_text, '[.eE]')
             AND length(regexp_replace(regexp_replace(value_text, '[eE].*$|[-.]', '', 'g'),
                                       '^0+', '')) >= 16
                THEN 'more digits than a JSON number holds exactly; send it as a string'
            WHEN aggregation IN ('SUM', 'MAX', 'LATEST')
             AND CASE WHEN contains(value_text, 'e') OR contains(value_text, 'E')
                      THEN try_cast(value_text AS DECIMAL(38,18)) <> number
                      ELSE strlen(value_text) >= 14
                           AND regexp_matches(value_text, '\\.\\d{{12}}\\d*[1-9]') END
                THEN 'more than 12 decimal places'
            WHEN aggregation = 'UNIQUE_COUNT' AND (j_value IS NULL OR j_value = 'null'
                  OR starts_with(j_value, '{{') OR starts_with(j_value, '[') OR value_text = '')
                THEN 'expected a string or number'
        END AS value_problem,
        CASE WHEN aggregation = 'COUNT' THEN CAST(1 AS {QUANTITY_TYPE})
             ELSE number END AS quantity
    FROM numbers
)
SELECT rid, line_head, line_reason AS reason, line_detail AS detail,
    event_id, source, event_type, customer_id, event_time, data,
    meter, quantity,
    CASE WHEN aggregation = 'UNIQUE_COUNT' THEN value_text END AS unique_value,
    CASE WHEN line_reason IS NULL THEN __DIMS__ END AS dims,
    -- One bad value rejects the line: an event is accepted whole or not at all.
    CASE WHEN value_problem IS NOT NULL THEN 1 WHEN quantity < 0 THEN 2 END AS value_rank,
    CASE WHEN value_problem IS NOT NULL OR quantity < 0 THEN
        'meter ' || meter || ': value is '
            || coalesce(CAST(j_value AS VARCHAR), 'missing') || ', '
            || coalesce(value_problem, 'expected zero or more')
    END AS value_detail,
    known_customer, customer_rank, meter_rank,
    CAST(k & CAST(18446744073709551615 AS UHUGEINT) AS UBIGINT) AS event_key,
    CAST(k >> 64 AS UBIGINT) AS event_key_hi
FROM checked
"""

# A line's reason when one of its meters rejects its value: the first by (rank, meter).
_VALUE_REASONS = """
CREATE OR REPLACE TEMP TABLE value_reasons AS
SELECT rid,
    arg_min(CASE value_rank WHEN 1 THEN 'invalid_value' ELSE 'negative_value' END,
            (value_rank, meter)) AS reason,
    arg_min(value_detail, (value_rank, meter)) AS detail
FROM classified
WHERE value_rank IS NOT NULL
GROUP BY rid
"""

# Valid lines, on their 128-bit key alone (16 bytes a row, whatever the ids look like):
# deduplication is done in small steps, each on as little data as it can.
_VALID_KEYS = """
CREATE OR REPLACE TEMP TABLE valid AS
SELECT rid, event_key, event_key_hi
FROM classified
WHERE line_head AND reason IS NULL AND known_customer
  AND rid NOT IN (SELECT rid FROM value_reasons)
"""

# Earlier days' accepted events that today's valid lines repeat, looked up in the window's
# key index: one row per accepted event, its 128-bit key and where it first landed.
_WINDOW_CANDIDATES = """
CREATE OR REPLACE TEMP TABLE candidates AS
SELECT p.event_key, p.event_key_hi, CAST(p.received_date AS DATE) AS received_date,
    CAST(p.file AS VARCHAR) AS file, CAST(p.line_no AS BIGINT) AS line_no
FROM prior_keys p
SEMI JOIN valid v ON p.event_key = v.event_key AND p.event_key_hi = v.event_key_hi
"""

# Re-sent copies: a valid line whose key was accepted on an earlier day, or that repeats
# an earlier line of the same day (first by file, then line: by rid).
_DUPLICATES_FOUND = """
CREATE OR REPLACE TEMP TABLE dups AS
WITH repeated AS (
    SELECT event_key FROM valid GROUP BY event_key HAVING count(*) > 1
), today_copies AS (
    -- Copies within the day: only keys seen twice need ordering, by the real ids.
    SELECT c.rid,
        row_number() OVER w AS copy_no,
        first_value(c.rid) OVER w AS first_rid
    FROM classified c
    WHERE c.line_head AND c.rid IN (SELECT rid FROM valid SEMI JOIN repeated USING (event_key))
    WINDOW w AS (PARTITION BY c.source, c.event_id ORDER BY c.rid)
), earlier AS (
    -- Originals accepted on earlier landing days; one row per event, its first arrival.
    SELECT c.event_key, c.event_key_hi,
        min(c.received_date) AS received_date,
        arg_min(c.file, (c.received_date, c.file, c.line_no)) AS file,
        arg_min(c.line_no, (c.received_date, c.file, c.line_no)) AS line_no
    FROM candidates c
    GROUP BY c.event_key, c.event_key_hi
), found AS (
    SELECT v.rid, e.received_date, e.file, e.line_no, t.first_rid
    FROM valid v
    LEFT JOIN today_copies t USING (rid)
    LEFT JOIN earlier e USING (event_key, event_key_hi)
    WHERE e.event_key IS NOT NULL OR t.copy_no > 1
)
SELECT f.rid,
    coalesce(f.received_date, $received_date) AS first_received_date,
    coalesce(f.file, l.file) AS first_file,
    coalesce(f.line_no, l.line_no) AS first_line_no
FROM found f
LEFT JOIN lines l ON l.rid = f.first_rid
"""

# The columns a row's rid or the day decide (received_date, file, line_no, ingest_batch_id)
# are added after the sort: the sort then moves 8 bytes a row for them instead of about 60.
_USAGE_EVENTS = """
SELECT c.event_id, c.source, c.event_key, c.event_key_hi,
    c.customer_id, c.event_type, c.meter, c.event_time,
    CAST(timezone('UTC', c.event_time) AS DATE) AS usage_date,
    c.quantity, c.unique_value, c.dims,
    coalesce(c.data, '{}') AS data,
    c.rid
FROM classified c
WHERE c.reason IS NULL AND c.known_customer
  AND c.rid NOT IN (SELECT rid FROM value_reasons)
  AND c.rid NOT IN (SELECT rid FROM dups)
-- Customer and meter first: what rating reads together is stored together. The landing
-- position breaks ties, which makes the order total and the file bytes repeatable. The
-- ranks sort as customer_id and meter do, and far faster than the strings.
ORDER BY c.customer_rank, c.meter_rank, c.event_time, c.rid
"""

# Rejected lines are found in three disjoint parts, each a filter the scan applies before it
# reads the wide columns: a line's own fault, an unknown customer, a meter's bad value.
_QUARANTINED = """
WITH candidates AS (
    SELECT rid, reason, detail, known_customer,
        source, event_id, event_type, customer_id, event_time
    FROM classified WHERE line_head AND reason IS NOT NULL
    UNION ALL
    SELECT rid, reason, detail, known_customer,
        source, event_id, event_type, customer_id, event_time
    FROM classified WHERE line_head AND reason IS NULL AND NOT known_customer
    UNION ALL
    SELECT rid, reason, detail, known_customer,
        source, event_id, event_type, customer_id, event_time
    FROM classified WHERE line_head AND reason IS NULL AND known_customer
        AND rid IN (SELECT rid FROM value_reasons)
), rejected AS (
    SELECT c.rid,
        coalesce(c.reason, v.reason,
                 CASE WHEN NOT c.known_customer THEN 'unknown_customer' END) AS reason,
        coalesce(c.detail, v.detail,
                 CASE WHEN NOT c.known_customer
                      THEN 'subject ' || c.customer_id || ' is not in customers' END) AS detail,
        c.source, c.event_id, c.event_type, c.customer_id, c.event_time
    FROM candidates c
    LEFT JOIN value_reasons v USING (rid)
)
SELECT $received_date AS received_date, l.file, l.line_no, r.reason, r.detail,
    coalesce(l.raw, try(decode(l.line)), CAST(l.line AS VARCHAR)) AS raw,
    CASE WHEN r.reason = 'invalid_encoding' THEN hex(l.line) END AS raw_hex,
    r.source, r.event_id, r.event_type, r.customer_id, r.event_time
FROM rejected r
JOIN lines l USING (rid)
ORDER BY r.rid
"""

_DUPLICATES = """
SELECT $received_date AS received_date, l.file, l.line_no, c.source, c.event_id,
    d.first_received_date, d.first_file, d.first_line_no
FROM dups d
JOIN classified c ON c.rid = d.rid AND c.line_head
JOIN lines l ON l.rid = d.rid
ORDER BY d.rid
"""

# Each file's lines hold a run of consecutive rids, starting here.
_FILE_RUNS = """
SELECT file, min(rid) AS first_rid, count(*) AS raw_lines
FROM lines
GROUP BY file
ORDER BY file
"""

# The day's accepted events for the key index of the days after it; where each landed
# follows from its rid.
_DAY_KEYS = """
SELECT v.rid, v.event_key, v.event_key_hi
FROM valid v
ANTI JOIN dups d USING (rid)
"""

_FILE_KEYS = """
SELECT DISTINCT event_key, event_key_hi, received_date, file,
    CAST(line_no AS INTEGER) AS line_no
FROM read_parquet($files)
"""

# An order-free digest (XOR of per-key MD5s): no sort or string aggregation of a day's keys.
_KEYS_DIGEST = """
SELECT coalesce(bit_xor(event_key), 0) || '-' || coalesce(bit_xor(event_key_hi), 0)
FROM valid ANTI JOIN dups USING (rid)
"""


def _dims_sql(meters: Sequence[Meter]) -> tuple[str, dict[str, object]]:
    """The dims JSON of a meter row: the meter's group values by name, names in order.

    One branch per meter that groups, each with its paths bound as constants: far cheaper
    than a JSON map built row by row from lists of paths.
    """
    branches: list[str] = []
    params: dict[str, object] = {}
    for i, meter in enumerate(meters):
        if not meter.group_by:
            continue
        pairs = []
        for j, (name, path) in enumerate(meter.group_by.items()):
            params[f"dim_name_{i}_{j}"] = name
            params[f"dim_path_{i}_{j}"] = path
            pairs.append(f"$dim_name_{i}_{j}, json_extract_string(data, $dim_path_{i}_{j})")
        params[f"dim_meter_{i}"] = meter.slug
        branches.append(
            f"WHEN $dim_meter_{i} THEN CAST(json_object({', '.join(pairs)}) AS VARCHAR)"
        )
    if not branches:
        return "'{}'", params
    return f"CASE meter {' '.join(branches)} ELSE '{{}}' END", params


# A JSON string fragment's value: most carry no escapes and are simply cut out of their
# quotes; only those with a backslash go through the JSON parser. substr cuts by code
# point as a [2:-2] slice does, in about half its time.
_UNQUOTE = """
CREATE OR REPLACE TEMP MACRO unquote(j) AS
    CASE WHEN contains(j, chr(92)) THEN j ->> '$' ELSE substr(j, 2, length(j) - 2) END;
"""


def connect(
    threads: int | None = None,
    memory_limit: str | None = None,
    temp_directory: Path | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for one step: never the shared warehouse file.

    With a memory limit, DuckDB spills joins, sorts and aggregates to ``temp_directory``
    instead of growing with the data: that is what bounds a step's memory.
    """
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(_UNQUOTE)
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute("SET memory_limit = ?", [memory_limit])
    if temp_directory is not None:
        temp_directory.mkdir(parents=True, exist_ok=True)
        con.execute("SET temp_directory = ?", [str(temp_directory)])
    return con


KEY_INDEX_SCHEMA = pa.schema(
    [
        ("event_key", pa.uint64()),
        ("event_key_hi", pa.uint64()),
        ("received_date", pa.dictionary(pa.int32(), pa.date32())),
        ("file", pa.dictionary(pa.int32(), pa.string())),
        ("line_no", pa.int32()),
    ]
)


def key_index(keys: pa.Table) -> pa.Table:
    """Accepted events as the window lookup reads them: keys and where they landed, in
    about 28 bytes a row (day and file dictionary-encoded)."""
    return pa.table(
        [
            keys["event_key"],
            keys["event_key_hi"],
            pc.dictionary_encode(keys["received_date"]),
            pc.dictionary_encode(keys["file"]),
            keys["line_no"],
        ],
        schema=KEY_INDEX_SCHEMA,
    )


def read_key_index(con: duckdb.DuckDBPyConnection, usage_file: Path) -> pa.Table:
    """The key index of a day already written: from its usage_events file."""
    return key_index(con.sql(_FILE_KEYS, params={"files": [str(usage_file)]}).to_arrow_table())


@dataclass
class ClassifiedDay:
    """A landing day classified in ``con``, waiting for the window to settle duplicates."""

    received_date: date
    timings: dict[str, float]


def _timed(
    con: duckdb.DuckDBPyConnection,
    timings: dict[str, float],
    name: str,
    sql: str,
    params: dict[str, object] | None = None,
) -> None:
    started = time.perf_counter()
    con.execute(sql, params)
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - started


def classify_day(
    con: duckdb.DuckDBPyConnection,
    *,
    received_date: date,
    lines: pa.Table,
    meters: Sequence[Meter],
    customer_ids: pa.Array,
    rules: IngestRules,
) -> ClassifiedDay:
    """Classify every line of a landing day on its own: all but duplicates."""
    # Every output is sorted explicitly; intermediate tables need no order of their own.
    con.execute("SET preserve_insertion_order = false")
    con.register("lines", lines)
    con.register("meter_list", meters_table(meters))
    # One of an event type's meters carries the line's own facts (verdict, key, counts).
    con.execute(
        "CREATE OR REPLACE TEMP TABLE meters AS SELECT *, "
        "row_number() OVER (PARTITION BY event_type ORDER BY meter) = 1 AS line_head, "
        "row_number() OVER (ORDER BY meter) AS meter_rank "
        "FROM meter_list"
    )
    con.register("customer_list", pa.table({"customer_id": pa.array(customer_ids, pa.string())}))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE customers AS "
        "SELECT customer_id, row_number() OVER (ORDER BY customer_id) AS customer_rank "
        "FROM (SELECT DISTINCT customer_id FROM customer_list WHERE customer_id IS NOT NULL)"
    )
    too_late_before = received_date - timedelta(days=rules.lateness_days)
    future_from = received_date + timedelta(days=rules.future_days)
    timings: dict[str, float] = {}
    dims, dims_params = _dims_sql(meters)
    _timed(
        con,
        timings,
        "parse",
        _CLASSIFY.replace("__DIMS__", dims),
        {
            "too_late_before": f"{too_late_before.isoformat()} 00:00:00+00",
            "future_from": f"{future_from.isoformat()} 00:00:00+00",
            **dims_params,
        },
    )
    _timed(con, timings, "validate", _VALUE_REASONS)
    _timed(con, timings, "validate", _VALID_KEYS)
    return ClassifiedDay(received_date, timings)


def settle_day(
    con: duckdb.DuckDBPyConnection,
    day: ClassifiedDay,
    *,
    prior_keys: Sequence[pa.Table],
    ingest_batch_id: str,
) -> DayResult:
    """Settle duplicates against the window's key index and assemble the day's tables."""
    timings = day.timings
    started = time.perf_counter()
    con.register(
        "prior_keys",
        pa.concat_tables(prior_keys) if prior_keys else KEY_INDEX_SCHEMA.empty_table(),
    )
    timings["deduplicate"] = timings.get("deduplicate", 0.0) + time.perf_counter() - started
    received_date = day.received_date
    _timed(con, timings, "deduplicate", _WINDOW_CANDIDATES)
    _timed(con, timings, "deduplicate", _DUPLICATES_FOUND, {"received_date": received_date})
    started = time.perf_counter()
    runs = con.sql(_FILE_RUNS).fetchnumpy()
    on_day = {"received_date": received_date}
    result = DayResult(
        usage_events=_usage_events(con, runs, received_date, ingest_batch_id),
        quarantined_events=con.sql(_QUARANTINED, params=on_day).to_arrow_table(),
        duplicate_events=con.sql(_DUPLICATES, params=on_day).to_arrow_table(),
        per_file=_per_file(con, runs),
        accepted_keys_digest=str(con.sql(_KEYS_DIGEST).fetchall()[0][0]),
        key_index=_day_key_index(con, runs, received_date),
        timings=timings,
    )
    timings["assemble"] = time.perf_counter() - started
    return result


def _per_file(con: duckdb.DuckDBPyConnection, runs: dict[str, np.ndarray]) -> pa.Table:
    """Lines per file and where they went: valid and duplicate lines are counted by the
    file whose run of rids holds them, which spares joining the day's lines twice."""
    starts = runs["first_rid"]

    def per_run(sql: str) -> np.ndarray:
        rids = con.sql(sql).fetchnumpy()["rid"]
        runs_of = np.searchsorted(starts, rids, side="right") - 1
        return np.bincount(runs_of, minlength=starts.size).astype(np.int64)

    raw = runs["raw_lines"].astype(np.int64)
    valid = per_run("SELECT rid FROM valid")
    duplicates = per_run("SELECT rid FROM dups")
    return pa.table(
        {
            "file": pa.array(runs["file"], pa.string()),
            "raw_lines": raw,
            "accepted": valid - duplicates,
            "duplicates": duplicates,
            "quarantined": raw - valid,
        }
    )


def _usage_events(
    con: duckdb.DuckDBPyConnection,
    runs: dict[str, np.ndarray],
    received_date: date,
    ingest_batch_id: str,
) -> pa.Table:
    """The day's usage_events in their order, with the columns their rid and the day decide."""
    usage = con.sql(_USAGE_EVENTS).to_arrow_table()
    rids = usage["rid"].to_numpy()
    starts = runs["first_rid"]
    file_no = np.searchsorted(starts, rids, side="right") - 1
    rows = usage.num_rows
    usage = usage.drop_columns(["rid"])
    usage = usage.add_column(
        usage.schema.get_field_index("usage_date") + 1,
        "received_date",
        pa.repeat(pa.scalar(received_date, pa.date32()), rows),
    )
    return (
        usage.append_column("file", pa.array(runs["file"], pa.string()).take(file_no))
        .append_column("line_no", pa.array(rids - starts[file_no] + 1))
        .append_column("ingest_batch_id", pa.repeat(pa.scalar(ingest_batch_id, pa.string()), rows))
    )


def _day_key_index(
    con: duckdb.DuckDBPyConnection, runs: dict[str, np.ndarray], received_date: date
) -> pa.Table:
    """The day's key index, its files and line numbers worked out from the rids: a file's
    lines are the rids from its first on, so no line is joined for them."""
    keys = con.sql(_DAY_KEYS).to_arrow_table()
    rids = keys["rid"].to_numpy()
    starts = runs["first_rid"]
    file_no = np.searchsorted(starts, rids, side="right") - 1
    return pa.table(
        [
            keys["event_key"],
            keys["event_key_hi"],
            pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(rids.size, np.int32)), pa.array([received_date], pa.date32())
            ),
            pa.DictionaryArray.from_arrays(
                pa.array(file_no.astype(np.int32)), pa.array(runs["file"], pa.string())
            ),
            pa.array((rids - starts[file_no] + 1).astype(np.int32)),
        ],
        schema=KEY_INDEX_SCHEMA,
    )


def ingest_day(
    con: duckdb.DuckDBPyConnection,
    *,
    received_date: date,
    lines: pa.Table,
    meters: Sequence[Meter],
    customer_ids: pa.Array,
    prior_usage_files: Sequence[Path],
    rules: IngestRules,
    ingest_batch_id: str,
) -> DayResult:
    """Classify every line of a landing day; prior days' accepted events decide duplicates."""
    day = classify_day(
        con,
        received_date=received_date,
        lines=lines,
        meters=meters,
        customer_ids=customer_ids,
        rules=rules,
    )
    prior = [read_key_index(con, p) for p in prior_usage_files]
    return settle_day(con, day, prior_keys=prior, ingest_batch_id=ingest_batch_id)
