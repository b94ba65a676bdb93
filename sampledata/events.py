"""Telemetry: the event types and how they are drawn, the per-customer population events
come from, and valid CloudEvents 1.0 lines built vectorised (numpy -> Arrow -> Polars string
expressions), one event day at a time."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from sampledata.days import MS_PER_DAY, TAIL_DAYS, to_date
from sampledata.reference import ENTITY_REGION, METERS, N_CUSTOMERS

TYPES = (
    "api.request",
    "llm.completion",
    "user.active",
    "storage.usage",
    "seats.snapshot",
    "payment.captured",
)
T_API, T_LLM, T_USER, T_STORAGE, T_SEATS, T_PAY = range(6)
TYPE_P = np.array([0.50, 0.25, 0.12, 0.03, 0.02, 0.08])
TYPE_ALPHA = np.array([1.0, 1.0, 0.8, 0.3, 0.3, 1.0])  # exponent on customer size per type
METER_COUNT = np.array([sum(m["event_type"] == t for m in METERS) for t in TYPES], dtype=np.int64)
VALUE_FIELD = {
    T_LLM: "tokens",
    T_USER: "user_id",
    T_STORAGE: "gb",
    T_SEATS: "seats",
    T_PAY: "amount",
}

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1", "us-west-2")
SOURCES = tuple(f"//ingest.example.com/{r}" for r in REGIONS)
ENDPOINTS = (
    "/v1/search",
    "/v1/documents",
    "/v1/embeddings",
    "/v1/users",
    "/v1/export",
    "/v1/webhooks",
)
ENDPOINT_P = np.array([0.35, 0.25, 0.15, 0.12, 0.05, 0.08])
STATUSES = ("200", "201", "400", "429", "500")
STATUS_P = np.array([0.90, 0.04, 0.03, 0.02, 0.01])
MODELS = ("small", "medium", "large")
MODEL_P = np.array([0.55, 0.30, 0.15])


class Population:
    """Per customer: which event types it sends, how many and with which values; drawn once
    from the customers, their sizes and their contracts."""

    def __init__(
        self,
        rng: np.random.Generator,
        customer_rows: list[dict[str, str]],
        size_w: npt.NDArray[np.float64],
        contracts: list[dict[str, Any]],
        plan_by_id: dict[str, dict[str, Any]],
        month_days: list[tuple[int, int]],
    ) -> None:
        self.first_day = month_days[0][0]
        last_day = month_days[-1][1]
        n = N_CUSTOMERS
        idx = {c["customer_id"]: i for i, c in enumerate(customer_rows)}
        cs, starts, stops = [], [], []
        uses = np.zeros((len(TYPES), n), dtype=bool)
        meter_type = {m["slug"]: TYPES.index(m["event_type"]) for m in METERS}
        for k in contracts:
            ci = idx[k["customer_id"]]
            stop = k["end_date"] if k["end_date"] is not None else 10**7
            for a in k["amendments"]:
                if a["type"] == "cancellation":
                    stop = min(stop, a["effective_date"])
            cs.append(ci)
            starts.append(k["start_date"])
            stops.append(stop)
            pids = [k["plan_id"]] + [
                a["plan_id"] for a in k["amendments"] if a["type"] == "plan_change"
            ]
            for pid in pids:
                for u in plan_by_id[pid]["usage"]:
                    uses[meter_type[u["meter"]], ci] = True
        self.k_cust = np.array(cs)
        self.k_start = np.array(starts)
        self.k_stop = np.array(stops)
        self.uses = uses
        self.cust_ids = pl.Series("customer_id", [c["customer_id"] for c in customer_rows])
        self.cur_str = pl.Series("currency", [c["currency"] for c in customer_rows])
        self.is_jpy = np.array([c["currency"] == "JPY" for c in customer_rows])
        ent = [c["entity_id"] for c in customer_rows]
        home = np.array([ENTITY_REGION[e] for e in ent])
        home[(np.array(ent) == "US01") & (rng.random(n) < 0.3)] = 3
        self.home_region = home
        wmax = size_w.max()
        self.n_users = np.clip((3 + 3000 * size_w / wmax).astype(np.int64), 3, 99_999)
        self.base_gb_milli = (rng.lognormal(4.0, 1.2, n) * (0.2 + size_w / wmax) * 1000).astype(
            np.int64
        ) + 500
        self.gb_growth = rng.uniform(0.0005, 0.01, n)
        self.base_seats = (5 + 400 * size_w / wmax * rng.uniform(0.5, 1.5, n)).astype(np.int64)
        span = last_day + TAIL_DAYS - self.first_day + 1
        self.seat_change_day = self.first_day + rng.integers(0, 2 * span, n)
        self.seat_delta = rng.integers(-3, 8, n)
        self.pay_mu = rng.uniform(3.0, 5.5, n)  # log of typical payment in major units
        self.base_w = np.stack([size_w**a for a in TYPE_ALPHA])
        self._wcache: dict[bytes, np.ndarray] = {}

    def weights(self, day: int) -> np.ndarray:
        """Per type, the probability of each customer sending an event of that type on `day`."""
        live = (self.k_start <= day) & (day < self.k_stop)
        active = np.bincount(self.k_cust[live], minlength=N_CUSTOMERS) > 0
        key = active.tobytes()
        w = self._wcache.get(key)
        if w is None:
            w = self.base_w * active * self.uses
            for t in range(len(TYPES)):
                if w[t].sum() <= 0:
                    w[t] = self.base_w[t] * (active if active.any() else 1)
            w = w / w.sum(axis=1, keepdims=True)
            self._wcache[key] = w
        return w


# Bytes of "0123456789abcdef", for hex ids built without a Python loop.
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_POS = np.array([*range(0, 8), *range(9, 13), *range(14, 18), *range(19, 23), *range(24, 36)])


def _fixed_width(mat: np.ndarray) -> pl.Series:
    """Rows of an (n, w) uint8 ASCII matrix as a String Series, without a Python loop."""
    n, w = mat.shape
    data = np.ascontiguousarray(mat)
    offsets = np.arange(n + 1, dtype=np.int64) * w
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
    return pl.Series(arr)


def uuids(rng: np.random.Generator, n: int) -> pl.Series:
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16)
    nib = np.empty((n, 32), dtype=np.uint8)
    nib[:, 0::2] = raw >> 4
    nib[:, 1::2] = raw & 15
    nib[:, 12] = 4
    nib[:, 16] = 8 | (nib[:, 16] & 3)
    mat = np.full((n, 36), ord("-"), dtype=np.uint8)
    mat[:, _UUID_POS] = _HEX[nib]
    return _fixed_width(mat)


def times(day: int, ms: np.ndarray) -> pl.Series:
    """RFC 3339 UTC timestamps with milliseconds for times `ms` into `day`."""
    n = len(ms)
    mat = np.empty((n, 24), dtype=np.uint8)
    mat[:, :11] = np.frombuffer(to_date(day).isoformat().encode() + b"T", dtype=np.uint8)
    h, rem = np.divmod(ms, 3_600_000)
    mi, rem = np.divmod(rem, 60_000)
    s, f = np.divmod(rem, 1000)
    for col, v in ((11, h), (14, mi), (17, s)):
        mat[:, col] = 48 + v // 10
        mat[:, col + 1] = 48 + v % 10
    mat[:, 13] = mat[:, 16] = ord(":")
    mat[:, 19] = ord(".")
    mat[:, 20] = 48 + f // 100
    mat[:, 21] = 48 + (f // 10) % 10
    mat[:, 22] = 48 + f % 10
    mat[:, 23] = ord("Z")
    return _fixed_width(mat)


def _cat(*parts: Any) -> pl.Expr:
    """concat_str of literal strings and expressions (no format-string escaping to get wrong)."""
    return pl.concat_str([pl.lit(p) if isinstance(p, str) else p for p in parts])


def _zfill(col: str, width: int) -> pl.Expr:
    return pl.col(col).cast(pl.String).str.zfill(width)


LINE_SCHEMA = {
    "line": pl.String,
    "key": pl.Float64,
    "outcome": pl.String,
    "reason": pl.String,
    "fault": pl.String,
    "source": pl.String,
    "event_id": pl.String,
    "event_type": pl.String,
    "customer_id": pl.String,
    "meter_count": pl.Int64,
    "gen_month": pl.String,
}


class Events:
    """Valid CloudEvents lines, drawn a day at a time."""

    def __init__(self, population: Population, rng: np.random.Generator) -> None:
        self.pop = population
        self.rng = rng
        self.sources = pl.Series(SOURCES)
        self.regions = pl.Series(REGIONS)
        self.types = pl.Series(TYPES)
        self.endpoints = pl.Series(ENDPOINTS)
        self.models = pl.Series(MODELS)
        self.statuses = pl.Series(STATUSES)

    def _data(self, t: int, day: int, cust: np.ndarray, region: np.ndarray) -> pl.Series:
        rng, pop = self.rng, self.pop
        k = len(cust)
        if t == T_API:
            df = pl.DataFrame(
                {
                    "r": self.regions.gather(region),
                    "e": self.endpoints.gather(rng.choice(len(ENDPOINTS), k, p=ENDPOINT_P)),
                    "s": self.statuses.gather(rng.choice(len(STATUSES), k, p=STATUS_P)),
                }
            )
            expr = _cat(
                '{"region":"',
                pl.col("r"),
                '","endpoint":"',
                pl.col("e"),
                '","status":',
                pl.col("s"),
                "}",
            )
        elif t == T_LLM:
            tokens = np.maximum(1, rng.lognormal(6.0, 1.1, k)).astype(np.int64)
            df = pl.DataFrame(
                {"m": self.models.gather(rng.choice(len(MODELS), k, p=MODEL_P)), "t": tokens}
            )
            expr = _cat('{"model":"', pl.col("m"), '","tokens":', pl.col("t").cast(pl.String), "}")
        elif t == T_USER:
            u = (pop.n_users[cust] * rng.random(k) ** 2).astype(np.int64) + 1
            df = pl.DataFrame({"u": u})
            expr = _cat('{"user_id":"u-', _zfill("u", 5), '"}')
        elif t == T_STORAGE:
            age = day - pop.first_day
            milli = pop.base_gb_milli[cust] * (1 + pop.gb_growth[cust] * max(age, 0))
            milli = (milli * (1 + 0.002 * rng.standard_normal(k))).astype(np.int64).clip(1, None)
            df = pl.DataFrame({"i": milli // 1000, "f": milli % 1000})
            expr = _cat('{"gb":', pl.col("i").cast(pl.String), ".", _zfill("f", 3), "}")
        elif t == T_SEATS:
            seats = pop.base_seats[cust] + pop.seat_delta[cust] * (day >= pop.seat_change_day[cust])
            df = pl.DataFrame({"s": np.maximum(seats, 1)})
            expr = _cat('{"seats":', pl.col("s").cast(pl.String), "}")
        else:
            jpy = pop.is_jpy[cust]
            major = np.exp(pop.pay_mu[cust] + 0.9 * rng.standard_normal(k))
            minor = np.where(jpy, major * 150, major * 100).astype(np.int64).clip(50, None)
            df = pl.DataFrame({"j": jpy, "m": minor, "c": pop.cur_str.gather(cust)})
            amount = (
                pl.when(pl.col("j"))
                .then(pl.col("m").cast(pl.String))
                .otherwise(
                    _cat(
                        (pl.col("m") // 100).cast(pl.String), ".", _zfill_expr(pl.col("m") % 100, 2)
                    )
                )
            )
            expr = _cat('{"amount":"', amount, '","currency":"', pl.col("c"), '"}')
        return df.select(expr.alias("data")).to_series()

    def batch(self, day: int, counts: np.ndarray) -> pl.DataFrame:
        """`counts[t]` fresh valid events of each type on `day`, in type order.

        Columns: line (without newline), ms (time of day), source, event_id, event_type,
        customer_id, meter_count."""
        rng = self.rng
        w = self.pop.weights(day)
        parts = []
        for t, k in enumerate(counts):
            k = int(k)
            if k == 0:
                continue
            cust = rng.choice(N_CUSTOMERS, size=k, p=w[t])
            ms = rng.integers(0, MS_PER_DAY, size=k)
            region = self.pop.home_region[cust].copy()
            flip = rng.random(k) < 0.08
            region[flip] = rng.integers(0, len(REGIONS), int(flip.sum()))
            parts.append(
                pl.DataFrame(
                    {
                        "t": np.full(k, t, dtype=np.int64),
                        "cust": cust,
                        "src": region,
                        "ms": ms,
                        "data": self._data(t, day, cust, region),
                    }
                )
            )
        df = (
            pl.concat(parts)
            if parts
            else pl.DataFrame(
                {"t": [], "cust": [], "src": [], "ms": [], "data": []},
                schema={
                    "t": pl.Int64,
                    "cust": pl.Int64,
                    "src": pl.Int64,
                    "ms": pl.Int64,
                    "data": pl.String,
                },
            )
        )
        n = df.height
        codes = df["t"].to_numpy()
        df = pl.DataFrame(
            {
                "event_id": uuids(rng, n),
                "source": self.sources.gather(df["src"].to_numpy()),
                "event_type": self.types.gather(codes),
                "customer_id": self.pop.cust_ids.gather(df["cust"].to_numpy()),
                "time": times(day, df["ms"].to_numpy()),
                "data": df["data"],
                "ms": df["ms"],
                "meter_count": METER_COUNT[codes],
            }
        )
        line = _cat(
            '{"specversion":"1.0","id":"',
            pl.col("event_id"),
            '","source":"',
            pl.col("source"),
            '","type":"',
            pl.col("event_type"),
            '","subject":"',
            pl.col("customer_id"),
            '","time":"',
            pl.col("time"),
            '","datacontenttype":"application/json","data":',
            pl.col("data"),
            "}",
        )
        return df.select(
            line.alias("line"),
            "ms",
            "source",
            "event_id",
            "event_type",
            "customer_id",
            "meter_count",
        )


def _zfill_expr(e: pl.Expr, width: int) -> pl.Expr:
    return e.cast(pl.String).str.zfill(width)


def line_frame(df: pl.DataFrame) -> pl.DataFrame:
    return df.select([pl.col(c).cast(t) for c, t in LINE_SCHEMA.items()])
