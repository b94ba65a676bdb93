"""One landing day of CloudEvents NDJSON → accepted usage events, duplicates and quarantine.

Every landing line ends in exactly one of three places. Lines are read as bytes and split
vectorised (PyArrow), then decoded and parsed with DuckDB's tolerant JSON functions:
readers such as ``read_json`` stop at, or silently drop, bad lines and lose line numbers,
and a controller needs both to trace a rejected event back to the file it came in.
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
    pass; otherwise as bytes, which DuckDB decodes line by line so that only the broken
    lines are quarantined.
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
    if payload.startswith(b"\xef\xbb\xbf"):
        payload = payload[3:]
    text: str | None
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        lines = pc.split_pattern(pa.array([text], pa.large_string()), "\n").flatten()
        raw_bytes = None
    else:
        lines = pc.split_pattern(pa.array([payload], pa.large_binary()), b"\n").flatten()
        raw_bytes = lines
    # A final newline ends the last line; it does not start another, empty one.
    count = len(lines) - (1 if not payload or payload.endswith(b"\n") else 0)
    lines = lines.slice(0, count)
    if raw_bytes is not None:
        raw_bytes = lines
        lines = pa.nulls(count, pa.large_string())
    return lines, raw_bytes, FileFingerprint(file.name, digest, size, count)


def read_landing(files: Sequence[LandingFile]) -> tuple[pa.Table, list[FileFingerprint]]:
    """All lines of a landing day as (file, line_no, raw, line), every file read first.

    ``raw`` is the line's text; ``line`` holds the bytes only for files that are not valid
    UTF-8 throughout. Files are read on a small thread pool: gzip and hashing let go of
    the GIL.
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


# Stage 1: structure. Every line gets its CloudEvents attributes or a structural reason.
# Each line is parsed once (json_extract with a list of paths); the checks below then work
# on the small extracted fragments: a JSON string starts with a quote, null is 'null'.
_PARSE = f"""
CREATE OR REPLACE TEMP TABLE parsed AS
WITH decoded AS (
    SELECT file, line_no,
        CASE WHEN raw IS NOT NULL THEN raw ELSE try(decode(line)) END AS text
    FROM lines
), shaped AS (
    SELECT file, line_no,
        CASE WHEN ends_with(text, chr(13)) THEN rtrim(text, chr(13)) ELSE text END AS raw
    FROM decoded
), valid AS (
    SELECT file, line_no, raw,
        raw IS NOT NULL AND json_valid(raw) AS is_json
    FROM shaped
), objects AS (
    SELECT file, line_no, raw, is_json,
        -- Almost every line starts with its brace; only the rest pay for a trim.
        CASE WHEN NOT is_json THEN false
             WHEN starts_with(raw, '{{') THEN true
             ELSE starts_with(ltrim(raw, {_WHITESPACE}), '{{') END AS is_object
    FROM valid
), fields AS (
    SELECT file, line_no, raw, is_json, is_object,
        CASE WHEN is_object THEN
            json_extract(raw, ['$.specversion', '$.id', '$.source', '$.type', '$.subject',
                               '$.time', '$.data'])
        END AS fx
    FROM objects
), attrs AS (
    SELECT file, line_no, raw, is_json, is_object,
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
        CASE WHEN regexp_full_match(time_text, '{_RFC3339}')
             THEN try_cast(upper(time_text) AS TIMESTAMPTZ) END AS event_time
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
)
SELECT file, line_no, reason,
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
            WHEN NOT starts_with(j_type, '"') THEN 'type is ' || j_type || ', expected a string'
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
"""

# Stage 2: event type and time, for lines whose structure is sound.
_TIMING = """
CREATE OR REPLACE TEMP TABLE timed AS
WITH limits AS (
    SELECT CAST($too_late_before AS TIMESTAMPTZ) AS too_late_before,
           CAST($future_from AS TIMESTAMPTZ) AS future_from
)
SELECT p.file, p.line_no,
    CASE
        WHEN p.reason IS NOT NULL THEN p.reason
        WHEN p.event_type NOT IN (SELECT event_type FROM meters) THEN 'unknown_event_type'
        WHEN p.event_time < l.too_late_before THEN 'too_late'
        WHEN p.event_time >= l.future_from THEN 'future_time'
    END AS reason,
    CASE
        WHEN p.reason IS NOT NULL THEN p.detail
        WHEN p.event_type NOT IN (SELECT event_type FROM meters)
            THEN 'type ' || p.event_type || ' feeds no meter in meters.yaml'
        WHEN p.event_time < l.too_late_before
            THEN 'event_time ' || strftime(p.event_time, '%Y-%m-%dT%H:%M:%SZ')
                 || ' is before the lateness limit '
                 || strftime(l.too_late_before, '%Y-%m-%d')
        WHEN p.event_time >= l.future_from
            THEN 'event_time ' || strftime(p.event_time, '%Y-%m-%dT%H:%M:%SZ')
                 || ' is at or after ' || strftime(l.future_from, '%Y-%m-%d')
    END AS detail
FROM parsed p, limits l
"""

# Stage 3: each meter the event feeds takes its value; one bad value rejects the line,
# because an event is accepted whole or not at all.
_VALUES = f"""
CREATE OR REPLACE TEMP TABLE metered AS
WITH candidates AS (
    SELECT p.file, p.line_no, p.event_id, p.source, p.customer_id, p.event_type,
        p.event_time, p.data, m.meter, m.aggregation, m.value_property,
        m.dim_names, m.dim_paths
    FROM parsed p
    JOIN timed t USING (file, line_no)
    JOIN meters m ON m.event_type = p.event_type
    WHERE t.reason IS NULL
), valued AS (
    SELECT *,
        CASE WHEN value_property IS NOT NULL
             THEN json_extract(data, value_property) END AS j_value
    FROM candidates
), texted AS (
    -- ->> yields a scalar's text: a number as written back by DuckDB, a string unquoted.
    SELECT *, j_value ->> '$' AS value_text FROM valued
), numbers AS (
    SELECT *,
        CASE WHEN aggregation IN ('SUM', 'MAX', 'LATEST')
              AND regexp_full_match(value_text, '{_NUMBER}')
             THEN try_cast(value_text AS {QUANTITY_TYPE}) END AS number
    FROM texted
)
SELECT file, line_no, event_id, source, customer_id, event_type, event_time, data,
    meter, aggregation,
    CASE WHEN aggregation = 'COUNT' THEN CAST(1 AS {QUANTITY_TYPE}) ELSE number END AS quantity,
    CASE
        WHEN aggregation IN ('SUM', 'MAX', 'LATEST') AND number IS NULL
            THEN 'expected a number or numeric string'
        -- JSON numbers arrive as doubles: from 16 significant digits on, the value read
        -- may not be the value sent. Strings carry any precision.
        WHEN aggregation IN ('SUM', 'MAX', 'LATEST') AND NOT starts_with(j_value, '"')
         AND regexp_matches(value_text, '[.eE]')
         AND length(regexp_replace(regexp_replace(value_text, '[eE].*$|[-.]', '', 'g'),
                                   '^0+', '')) >= 16
            THEN 'more digits than a JSON number holds exactly; send it as a string'
        WHEN aggregation IN ('SUM', 'MAX', 'LATEST')
         AND CASE WHEN regexp_matches(value_text, '[eE]')
                  THEN try_cast(value_text AS DECIMAL(38,18)) <> number
                  ELSE regexp_matches(value_text, '\\.\\d{{12}}\\d*[1-9]') END
            THEN 'more than 12 decimal places'
        WHEN aggregation = 'UNIQUE_COUNT' AND (j_value IS NULL OR j_value = 'null'
              OR starts_with(j_value, '{{') OR starts_with(j_value, '[') OR value_text = '')
            THEN 'expected a string or number'
    END AS value_problem,
    CASE WHEN aggregation = 'UNIQUE_COUNT' THEN value_text END AS unique_value,
    CASE WHEN len(dim_paths) = 0 THEN '{{}}'
         ELSE CAST(to_json(map(dim_names,
                               list_transform(dim_paths, lambda x: json_extract_string(data, x))))
                   AS VARCHAR)
    END AS dims,
    j_value
FROM numbers
"""

_VALUE_REASONS = """
CREATE OR REPLACE TEMP TABLE value_reasons AS
SELECT file, line_no,
    arg_min(reason, (rank, meter)) AS reason,
    arg_min(detail, (rank, meter)) AS detail
FROM (
    SELECT file, line_no, meter,
        CASE WHEN value_problem IS NOT NULL THEN 1 WHEN quantity < 0 THEN 2 END AS rank,
        CASE WHEN value_problem IS NOT NULL THEN 'invalid_value'
             WHEN quantity < 0 THEN 'negative_value' END AS reason,
        'meter ' || meter || ': value is '
            || coalesce(CAST(j_value AS VARCHAR), 'missing') || ', '
            || coalesce(value_problem, 'expected zero or more') AS detail
    FROM metered
)
WHERE rank IS NOT NULL
GROUP BY file, line_no
"""

_VERDICT = """
CREATE OR REPLACE TEMP TABLE verdict AS
SELECT p.file, p.line_no, p.event_id, p.source, p.event_type, p.customer_id, p.event_time,
    coalesce(t.reason, v.reason,
             CASE WHEN p.customer_id NOT IN (SELECT customer_id FROM customers)
                  THEN 'unknown_customer' END) AS reason,
    coalesce(t.detail, v.detail,
             CASE WHEN p.customer_id NOT IN (SELECT customer_id FROM customers)
                  THEN 'subject ' || p.customer_id || ' is not in customers' END) AS detail
FROM parsed p
JOIN timed t USING (file, line_no)
LEFT JOIN value_reasons v USING (file, line_no)
"""

# Deduplication in small steps, each on as little data as it can: the window of earlier
# days is scanned on the 128-bit event key alone (16 bytes a row, whatever the ids look
# like), never on the id strings. The key is the MD5 of (source, id) in two 64-bit halves:
# the same on every machine and DuckDB version; two different events share one with odds
# of about n^2 / 2^129, nil at any real volume.
_VALID_KEYS = """
CREATE OR REPLACE TEMP TABLE valid AS
WITH hashed AS (
    SELECT file, line_no, source, event_id, md5_number(source || chr(31) || event_id) AS k
    FROM verdict WHERE reason IS NULL
)
SELECT file, line_no, source, event_id,
    CAST(k & CAST(18446744073709551615 AS UHUGEINT) AS UBIGINT) AS event_key,
    CAST(k >> 64 AS UBIGINT) AS event_key_hi
FROM hashed
"""

_WINDOW_CANDIDATES = """
CREATE OR REPLACE TEMP TABLE candidates AS
SELECT p.event_key, p.event_key_hi, p.received_date, p.file, p.line_no
FROM prior_keys p
SEMI JOIN valid v ON p.event_key = v.event_key AND p.event_key_hi = v.event_key_hi
"""

_FIRST_ARRIVAL = """
CREATE OR REPLACE TEMP TABLE arrival AS
WITH repeated AS (
    SELECT event_key FROM valid GROUP BY event_key HAVING count(*) > 1
), today_copies AS (
    -- Copies within the day: only keys seen twice need ordering, by the real ids.
    SELECT v.file, v.line_no,
        row_number() OVER w AS copy_no,
        first_value(v.file) OVER w AS first_file,
        first_value(v.line_no) OVER w AS first_line_no
    FROM valid v
    SEMI JOIN repeated r USING (event_key)
    WINDOW w AS (PARTITION BY v.source, v.event_id ORDER BY v.file, v.line_no)
), earlier AS (
    -- Originals accepted on earlier landing days; one row per event, its first arrival.
    SELECT c.event_key, c.event_key_hi,
        min(c.received_date) AS received_date,
        arg_min(c.file, (c.received_date, c.file, c.line_no)) AS file,
        arg_min(c.line_no, (c.received_date, c.file, c.line_no)) AS line_no
    FROM candidates c
    GROUP BY c.event_key, c.event_key_hi
)
SELECT v.file, v.line_no, v.source, v.event_id, v.event_key, v.event_key_hi,
    CASE WHEN e.event_key IS NULL AND coalesce(t.copy_no, 1) = 1 THEN 'accepted'
         ELSE 'duplicate' END AS outcome,
    coalesce(e.received_date, $received_date) AS first_received_date,
    coalesce(e.file, t.first_file, v.file) AS first_file,
    coalesce(e.line_no, t.first_line_no, v.line_no) AS first_line_no
FROM valid v
LEFT JOIN today_copies t USING (file, line_no)
LEFT JOIN earlier e USING (event_key, event_key_hi)
"""

_USAGE_EVENTS = """
SELECT m.event_id, m.source, a.event_key, a.event_key_hi,
    m.customer_id, m.event_type, m.meter, m.event_time,
    CAST(timezone('UTC', m.event_time) AS DATE) AS usage_date,
    $received_date AS received_date,
    m.quantity, m.unique_value, m.dims,
    coalesce(m.data, '{}') AS data,
    m.file, m.line_no, $batch_id AS ingest_batch_id
FROM metered m
JOIN arrival a ON a.file = m.file AND a.line_no = m.line_no AND a.outcome = 'accepted'
-- Customer and meter first: what rating reads together is stored together. The landing
-- position breaks ties, which makes the order total and the file bytes repeatable.
ORDER BY m.customer_id, m.meter, m.event_time, m.file, m.line_no
"""

_QUARANTINED = """
SELECT $received_date AS received_date, v.file, v.line_no, v.reason, v.detail,
    coalesce(l.raw, try(decode(l.line)), CAST(l.line AS VARCHAR)) AS raw,
    CASE WHEN v.reason = 'invalid_encoding' THEN hex(l.line) END AS raw_hex,
    v.source, v.event_id, v.event_type, v.customer_id, v.event_time
FROM verdict v
JOIN parsed p USING (file, line_no)
JOIN lines l USING (file, line_no)
WHERE v.reason IS NOT NULL
ORDER BY v.file, v.line_no
"""

_DUPLICATES = """
SELECT $received_date AS received_date, a.file, a.line_no, a.source, a.event_id,
    a.first_received_date, a.first_file, a.first_line_no
FROM arrival a
WHERE a.outcome = 'duplicate'
ORDER BY a.file, a.line_no
"""

_PER_FILE = """
SELECT v.file,
    count(*) AS raw_lines,
    count(*) FILTER (WHERE a.outcome = 'accepted') AS accepted,
    count(*) FILTER (WHERE a.outcome = 'duplicate') AS duplicates,
    count(*) FILTER (WHERE v.reason IS NOT NULL) AS quarantined
FROM verdict v
LEFT JOIN arrival a USING (file, line_no)
GROUP BY v.file
ORDER BY v.file
"""

# An order-free digest (XOR of per-key MD5s): no sort or string aggregation of a day's keys.
_KEYS_DIGEST = """
SELECT coalesce(bit_xor(event_key), 0) || '-' || coalesce(bit_xor(event_key_hi), 0)
FROM arrival WHERE outcome = 'accepted'
"""

PRIOR_KEYS_COLUMNS = ("event_key", "event_key_hi", "received_date", "file", "line_no")


# A JSON string fragment's value: most carry no escapes and are simply cut out of their
# quotes; only those with a backslash go through the JSON parser.
_UNQUOTE = """
CREATE OR REPLACE TEMP MACRO unquote(j) AS
    CASE WHEN contains(j, chr(92)) THEN j ->> '$' ELSE j[2:-2] END;
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
    con.register("lines", lines)
    con.register("meters", meters_table(meters))
    con.register("customers", pa.table({"customer_id": pa.array(customer_ids, pa.string())}))
    if prior_usage_files:
        # A view, not a table: DuckDB reads only the two key columns it needs, and only
        # where they match today's valid keys.
        con.read_parquet([str(p) for p in prior_usage_files]).select(
            ", ".join(PRIOR_KEYS_COLUMNS)
        ).create_view("prior_keys", replace=True)
    else:
        con.execute(
            "CREATE OR REPLACE TEMP VIEW prior_keys AS SELECT NULL::UBIGINT AS event_key, "
            "NULL::UBIGINT AS event_key_hi, NULL::DATE AS received_date, "
            "NULL::VARCHAR AS file, NULL::BIGINT AS line_no WHERE false"
        )
    too_late_before = received_date - timedelta(days=rules.lateness_days)
    future_from = received_date + timedelta(days=rules.future_days)
    timings: dict[str, float] = {}

    def stage(name: str, sql: str, params: dict[str, object] | None = None) -> None:
        started = time.perf_counter()
        con.execute(sql, params)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

    stage("parse", _PARSE)
    stage(
        "validate",
        _TIMING,
        {
            "too_late_before": f"{too_late_before.isoformat()} 00:00:00+00",
            "future_from": f"{future_from.isoformat()} 00:00:00+00",
        },
    )
    stage("validate", _VALUES)
    stage("validate", _VALUE_REASONS)
    stage("validate", _VERDICT)
    stage("deduplicate", _VALID_KEYS)
    stage("deduplicate", _WINDOW_CANDIDATES)
    stage("deduplicate", _FIRST_ARRIVAL, {"received_date": received_date})
    started = time.perf_counter()
    params = {"received_date": received_date, "batch_id": ingest_batch_id}
    day = {"received_date": received_date}
    result = DayResult(
        usage_events=con.sql(_USAGE_EVENTS, params=params).to_arrow_table(),
        quarantined_events=con.sql(_QUARANTINED, params=day).to_arrow_table(),
        duplicate_events=con.sql(_DUPLICATES, params=day).to_arrow_table(),
        per_file=con.sql(_PER_FILE).to_arrow_table(),
        accepted_keys_digest=str(con.sql(_KEYS_DIGEST).fetchall()[0][0]),
        timings=timings,
    )
    timings["assemble"] = time.perf_counter() - started
    return result
