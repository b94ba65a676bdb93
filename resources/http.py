"""HTTP sessions for the ERP and webhook clients: retries, backoff and a rate limit.

Technical faults are retried here, by urllib3, with exponential backoff and jitter,
honouring Retry-After; business answers are never retried (they come back as HTTP 200
with an error body, or 4xx). Retrying a POST is safe only because everything we send
carries an external id the receiver deduplicates on (a unique index in the ERP, an
Idempotency-Key for webhooks), and the publisher looks a document up before creating it
again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from pyrate_limiter import Duration, Limiter, Rate
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

# 429: throttled; 502/504: a gateway lost the answer; 503: the server gave up (Tryton
# answers 503 when its own retries on lock contention run out). 500 is retried too: the
# request either failed before it changed anything or is caught by the external id.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before a technical fault reaches the caller."""

    attempts: int = 6
    backoff_seconds: float = 0.25
    backoff_max_seconds: float = 20.0
    jitter_seconds: float = 0.25
    timeout_seconds: float = 60.0

    def retry(self) -> Retry:
        return Retry(
            total=self.attempts,
            connect=self.attempts,
            read=self.attempts,
            status=self.attempts,
            other=self.attempts,
            allowed_methods=None,  # POST too: see the module docstring
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self.backoff_seconds,
            backoff_max=self.backoff_max_seconds,
            backoff_jitter=self.jitter_seconds,
            respect_retry_after_header=True,
            raise_on_status=False,
        )


class RateLimitedSession(requests.Session):
    """A session whose every request takes a permit from a shared limiter first, and
    times out unless the caller says otherwise."""

    def __init__(self, limiter: Limiter | None, bucket: str, timeout: float) -> None:
        super().__init__()
        self._limiter = limiter
        self._bucket = bucket
        self._timeout = timeout

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if self._limiter is not None:
            self._limiter.try_acquire(self._bucket)
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


def rate_limiter(per_second: float) -> Limiter | None:
    """A limiter shared by every thread of a publisher; None for no limit."""
    if per_second <= 0:
        return None
    # One request per 1/rate seconds: an even pace, no burst at the start of each second
    # (an ERP's throttle counts over windows we cannot see).
    interval_ms = max(1, round(Duration.SECOND.value / per_second))
    return Limiter(Rate(1, interval_ms), buffer_ms=1)


def session(
    policy: RetryPolicy,
    *,
    limiter: Limiter | None = None,
    bucket: str = "http",
    pool_size: int = 4,
    headers: Mapping[str, str] | None = None,
) -> requests.Session:
    """A requests session that retries technical faults by the policy and, with a
    limiter, waits for a permit before every request (urllib3's own retries wait by
    backoff and Retry-After instead)."""
    s = RateLimitedSession(limiter, bucket, policy.timeout_seconds)
    adapter = HTTPAdapter(
        max_retries=policy.retry(), pool_connections=pool_size, pool_maxsize=pool_size
    )
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    if headers:
        s.headers.update(headers)
    return s
