"""Deliver the canonical business events of the outbox to an HTTP endpoint (a webhook).

The contract with the receiver:

- Each event is one ``POST`` of its canonical JSON payload, byte for byte as it sits in
  ``event_outbox.payload`` (its SHA-256 is ``payload_sha256``), with the headers
  ``Content-Type: application/json``, ``Idempotency-Key: <event_id>``,
  ``X-Meterclose-Event-Type``, ``X-Meterclose-Schema-Version``,
  ``X-Meterclose-Correlation-Id`` and, when a secret is configured,
  ``X-Meterclose-Signature: sha256=<hex HMAC-SHA256 of the body under the secret>``.
- Delivery is at least once on the wire: a request whose answer is lost (a dropped
  connection, a timeout, a crash of the publisher) is sent again, by urllib3's retries
  within a run or by the next run. It is exactly once in effect for a receiver that
  deduplicates on ``Idempotency-Key``: the key of an event never changes, and an event
  whose payload changes after delivery follows as a new event ``<event_id>#<digest>``
  (see ``ControlDb.enqueue_events``), never as a resend of the old key.
- The receiver answers 2xx when it has the event, 409 when it already had it (both end
  ``confirmed``), and another 4xx to refuse it for a business reason: the event ends
  ``rejected`` with the receiver's status and message, and is never sent again. 401, 403,
  404 (our configuration is wrong), 408, 429,
  5xx, timeouts and connection faults are technical: retried with backoff (honouring
  Retry-After) by the session's policy, and, if they outlast it, left for the next run.

Outbox states: ``pending`` → ``sent`` → ``confirmed`` | ``rejected``. An event is marked
``sent`` (and its attempts counted) in its own short transaction before the request goes
out, so a crash mid-flight leaves evidence; ``sent`` means "outcome unknown" and such
events are delivered again, like ``pending`` ones. The mark is a compare-and-set on the
attempts and payload the run read, so two publishers running at once never send the
same event in the same attempt.

A run goes through the events in (created_at, event_id) order on a small thread pool,
under one rate limit shared by its threads. After ``max_consecutive_failures`` technical
failures in a row it stops taking new events (the endpoint is evidently down; the rest
stay as they are for the next run) and says so in its report.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import sqlalchemy as sa
from pyrate_limiter import Limiter

from resources.base import ConfigurableResource
from resources.control_db import ControlDb, event_outbox
from resources.http import RetryPolicy, rate_limiter, session

log = logging.getLogger(__name__)

DELIVERABLE = ("pending", "sent")
# Receiver's message kept in last_error, at most (characters).
MESSAGE_LIMIT = 2000
# 4xx answers that say nothing about the event: 408 (request timeout), 429 (throttled),
# and 401/403/404 — a wrong secret, credentials or URL, which is ours to fix in the
# configuration, not a reason to give up on every event. The event goes again.
TECHNICAL_4XX = frozenset({401, 403, 404, 408, 429})


@dataclass(frozen=True)
class Failure:
    """One event a run could not deliver: why (secrets redacted)."""

    event_id: str
    error: str


@dataclass
class DeliveryReport:
    """What one delivery run did, and where the outbox stands after it."""

    endpoint: str
    confirmed: int = 0
    # Of the confirmed: the receiver answered 409, it already had them.
    already_delivered: int = 0
    rejected: int = 0
    # Technical faults that outlasted the retries: left 'sent' for the next run.
    failed: int = 0
    # Taken by another publisher between our read and our mark: not sent by this run.
    skipped: int = 0
    # Not attempted because the run stopped after too many failures in a row.
    not_attempted: int = 0
    stopped_early: bool = False
    elapsed_seconds: float = 0.0
    # Outbox rows by state after the run (within the run's period, if it had one).
    states: dict[str, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    rejections: list[Failure] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.confirmed + self.rejected + self.failed

    def summary(self) -> str:
        text = (
            f"{self.confirmed} confirmed ({self.already_delivered} already delivered), "
            f"{self.rejected} rejected, {self.failed} failed in {self.elapsed_seconds:.1f}s "
            f"to {self.endpoint}"
        )
        if self.stopped_early:
            text += (
                f"; stopped after {self.failed} technical failures in a row, "
                f"{self.not_attempted} events left for the next run"
            )
        if self.failures:
            text += f"; last error: {self.failures[-1].error}"
        outbox = ", ".join(f"{state} {n}" for state, n in sorted(self.states.items()))
        return f"{text}. Outbox: {outbox or 'empty'}"


@dataclass(frozen=True)
class _Event:
    event_id: str
    event_type: str
    schema_version: int
    correlation_id: str
    payload: str
    payload_sha256: str
    attempts: int


@dataclass(frozen=True)
class _Outcome:
    event_id: str
    state: str  # confirmed | rejected | sent (a technical failure)
    status: int | None
    error: str | None = None


def signature(secret: str, body: bytes) -> str:
    """The ``X-Meterclose-Signature`` value of a body: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def safe_url(url: str) -> str:
    """The endpoint as it may appear in logs and errors: no credentials, no query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class _Redactor:
    """Removes the secret and the endpoint's credentials from any text we keep or log."""

    def __init__(self, endpoint: str, secret: str | None) -> None:
        self._pairs = [(endpoint, safe_url(endpoint))]
        parts = urlsplit(endpoint)
        for sensitive in (parts.password, parts.query, secret):
            if sensitive:
                self._pairs.append((sensitive, "***"))

    def __call__(self, text: str) -> str:
        for needle, replacement in self._pairs:
            text = text.replace(needle, replacement)
        return text[:MESSAGE_LIMIT]


def _engine(db: ControlDb | sa.Engine) -> sa.Engine:
    return db.engine if isinstance(db, ControlDb) else db


def _due(engine: sa.Engine, period: str | None, limit: int | None) -> list[_Event]:
    t = event_outbox
    query = (
        sa.select(
            t.c.event_id,
            t.c.event_type,
            t.c.schema_version,
            t.c.correlation_id,
            t.c.payload,
            t.c.payload_sha256,
            t.c.attempts,
        )
        .where(t.c.state.in_(DELIVERABLE))
        .order_by(t.c.created_at, t.c.event_id)
    )
    if period is not None:
        query = query.where(t.c.period == period)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [_Event(**row) for row in conn.execute(query).mappings()]


def _mark_sent(engine: sa.Engine, event: _Event) -> bool:
    """Claim an event for this attempt; False when another publisher took it first or its
    payload changed since we read it."""
    t = event_outbox
    with engine.begin() as conn:
        claimed = conn.execute(
            t.update()
            .where(t.c.event_id == event.event_id)
            .where(t.c.state.in_(DELIVERABLE))
            .where(t.c.attempts == event.attempts)
            .where(t.c.payload_sha256 == event.payload_sha256)
            .values(state="sent", attempts=t.c.attempts + 1, updated_at=datetime.now(UTC))
        ).rowcount
    return bool(claimed)


def _record(engine: sa.Engine, event: _Event, outcome: _Outcome) -> None:
    t = event_outbox
    query = t.update().where(t.c.event_id == event.event_id).where(t.c.state == "sent")
    if outcome.state == "sent":
        # Only our own attempt's error: a later attempt (another run) may have moved on.
        query = query.where(t.c.attempts == event.attempts + 1)
    values: dict[str, Any] = {"state": outcome.state, "updated_at": datetime.now(UTC)}
    values["last_error"] = None if outcome.state == "confirmed" else outcome.error
    with engine.begin() as conn:
        conn.execute(query.values(**values))


def _states(engine: sa.Engine, period: str | None) -> dict[str, int]:
    t = event_outbox
    query = sa.select(t.c.state, sa.func.count()).group_by(t.c.state)
    if period is not None:
        query = query.where(t.c.period == period)
    with engine.connect() as conn:
        return {state: int(n) for state, n in conn.execute(query)}


class _Sender:
    """Posts events; one requests session per thread, one rate limiter for all of them."""

    def __init__(
        self,
        endpoint: str,
        secret: str | None,
        policy: RetryPolicy,
        limiter: Limiter | None,
        redact: _Redactor,
    ) -> None:
        self.endpoint = endpoint
        self._secret = secret
        self._policy = policy
        self._limiter = limiter
        self._redact = redact
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            s = session(self._policy, limiter=self._limiter, bucket="webhook", pool_size=1)
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    def headers(self, event: _Event, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": event.event_id,
            "X-Meterclose-Event-Type": event.event_type,
            "X-Meterclose-Schema-Version": str(event.schema_version),
            "X-Meterclose-Correlation-Id": event.correlation_id,
        }
        if self._secret:
            headers["X-Meterclose-Signature"] = signature(self._secret, body)
        return headers

    def post(self, event: _Event) -> _Outcome:
        body = event.payload.encode()
        try:
            # Redirects are not followed: requests would turn the POST into a GET.
            response = self._session().post(
                self.endpoint,
                data=body,
                headers=self.headers(event, body),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            # Retries exhausted on a connection fault or a timeout: the outcome is unknown.
            return _Outcome(
                event.event_id, "sent", None, self._redact(f"{type(exc).__name__}: {exc}")
            )
        status = response.status_code
        message = self._redact(f"HTTP {status}: {response.text.strip()}")
        response.close()
        if 200 <= status < 300 or status == 409:
            return _Outcome(event.event_id, "confirmed", status)
        if 400 <= status < 500 and status not in TECHNICAL_4XX:
            return _Outcome(event.event_id, "rejected", status, message)
        if 300 <= status < 400:
            location = self._redact(response.headers.get("Location", "?"))
            message = f"HTTP {status}: redirected to {location}; configure the final URL"
        return _Outcome(event.event_id, "sent", status, message)

    def close(self) -> None:
        with self._lock:
            for s in self._sessions:
                s.close()


def deliver_events(
    db: ControlDb | sa.Engine,
    endpoint: str,
    *,
    secret: str | None,
    policy: RetryPolicy,
    rate_per_second: float,
    concurrency: int,
    period: str | None = None,
    limit: int | None = None,
    max_consecutive_failures: int | None = 5,
) -> DeliveryReport:
    """Deliver the outbox's pending and sent events (optionally one period's, at most
    ``limit``) to ``endpoint``; see the module docstring for the contract. A technical
    failure leaves its event ``sent`` and the run carries on, until
    ``max_consecutive_failures`` in a row (None: never stop early)."""
    started = time.monotonic()
    engine = _engine(db)
    redact = _Redactor(endpoint, secret)
    report = DeliveryReport(endpoint=safe_url(endpoint))
    due = _due(engine, period, limit)
    sender = _Sender(endpoint, secret, policy, rate_limiter(rate_per_second), redact)
    consecutive = 0

    def deliver(event: _Event) -> _Outcome | None:
        if not _mark_sent(engine, event):
            return None
        outcome = sender.post(event)
        _record(engine, event, outcome)
        return outcome

    queue: Iterator[_Event] = iter(due)
    pending: set[Future[_Outcome | None]] = set()
    try:
        with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="webhook") as pool:
            # Keep at most `concurrency` events in flight, so that a stop leaves the rest
            # untouched (pending or sent, as they were).
            for event in queue:
                pending.add(pool.submit(deliver, event))
                if len(pending) < concurrency:
                    continue
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    consecutive = _count(report, future.result(), consecutive)
                if max_consecutive_failures and consecutive >= max_consecutive_failures:
                    report.stopped_early = True
                    break
            for future in pending:
                consecutive = _count(report, future.result(), consecutive)
    finally:
        sender.close()
    if report.stopped_early:
        report.not_attempted = sum(1 for _ in queue)
    report.elapsed_seconds = time.monotonic() - started
    report.states = _states(engine, period)
    level = logging.WARNING if report.failed or report.rejected else logging.INFO
    log.log(level, "webhook delivery: %s", report.summary())
    return report


def _count(report: DeliveryReport, outcome: _Outcome | None, consecutive: int) -> int:
    """Add one outcome to the report; returns the technical failures in a row so far."""
    if outcome is None:
        report.skipped += 1
        return consecutive
    if outcome.state == "confirmed":
        report.confirmed += 1
        report.already_delivered += outcome.status == 409
        return 0
    if outcome.state == "rejected":
        report.rejected += 1
        report.rejections.append(Failure(outcome.event_id, outcome.error or ""))
        log.warning("event %s rejected: %s", outcome.event_id, outcome.error)
        return 0
    report.failed += 1
    report.failures.append(Failure(outcome.event_id, outcome.error or ""))
    log.warning(
        "event %s not delivered, left for the next run: %s", outcome.event_id, outcome.error
    )
    return consecutive + 1


class WebhookResource(ConfigurableResource):
    """Where business events are delivered: the endpoint, and how hard to try."""

    endpoint: str
    # Name of the environment variable holding the signing secret (never the secret).
    secret_env: str | None = "METERCLOSE_WEBHOOK_SECRET"
    rate_per_second: float = 10.0
    concurrency: int = 4
    attempts: int = 6
    backoff_seconds: float = 0.25
    backoff_max_seconds: float = 20.0
    timeout_seconds: float = 30.0
    max_consecutive_failures: int = 5

    def secret(self) -> str | None:
        if not self.secret_env:
            return None
        secret = os.environ.get(self.secret_env)
        if not secret:
            raise ValueError(
                f"webhook signing secret: environment variable {self.secret_env} is not set; "
                "set it, or set secret_env to null to deliver unsigned"
            )
        return secret

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.attempts,
            backoff_seconds=self.backoff_seconds,
            backoff_max_seconds=self.backoff_max_seconds,
            timeout_seconds=self.timeout_seconds,
        )

    def deliver(
        self, db: ControlDb | sa.Engine, period: str | None = None, limit: int | None = None
    ) -> DeliveryReport:
        return deliver_events(
            db,
            self.endpoint,
            secret=self.secret(),
            policy=self.policy(),
            rate_per_second=self.rate_per_second,
            concurrency=self.concurrency,
            period=period,
            limit=limit,
            max_consecutive_failures=self.max_consecutive_failures or None,
        )
