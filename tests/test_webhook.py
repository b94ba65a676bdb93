"""Business events delivered to a real HTTP receiver, exactly once in effect, through the
faulty proxy: delays, throttling, server errors, dropped connections, a killed publisher."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import requests
import sqlalchemy as sa

from rating.events import approval_event, close_events
from resources.control_db import ControlDb, event_outbox
from resources.http import RetryPolicy
from resources.webhook import DeliveryReport, WebhookResource, deliver_events
from tests import postgres
from tests.faulty_proxy import Fault, FaultyProxy, Plan

SECRET = "whsec-test-5f1d2c"
PERIOD = "2026-09"
ROOT = Path(__file__).resolve().parents[1]

# Small backoff so that retries cost milliseconds; enough attempts to outlast the faults.
FAST = RetryPolicy(
    attempts=8,
    backoff_seconds=0.01,
    backoff_max_seconds=0.05,
    jitter_seconds=0.01,
    timeout_seconds=5,
)


# -- a receiving endpoint --------------------------------------------------------------


@dataclass
class Post:
    key: str
    event_type: str
    body: bytes
    signature_ok: bool
    status: int
    at: float


@dataclass
class Receiver:
    """A webhook receiver as the contract expects one: verifies the signature, keeps each
    Idempotency-Key once (409 for a repeat), refuses the event types it is told to."""

    secret: str | None
    reject: frozenset[str] = frozenset()
    posts: list[Post] = field(default_factory=list)
    store: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: Any, body: bytes) -> tuple[int, bytes]:
        key = headers.get("Idempotency-Key", "")
        event_type = headers.get("X-Meterclose-Event-Type", "")
        ok = True
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            ok = hmac.compare_digest(expected, headers.get("X-Meterclose-Signature", ""))
        with self.lock:
            if not ok:
                status, answer = 401, b'{"error":"bad signature"}'
            elif event_type in self.reject:
                status = 400
                answer = json.dumps(
                    {"error": f"{event_type} refused: period {PERIOD} is closed in the ledger"}
                ).encode()
            elif key in self.store:
                status, answer = 409, b'{"error":"already received"}'
            else:
                self.store[key] = body
                status, answer = 200, json.dumps({"received": key}).encode()
            self.posts.append(Post(key, event_type, body, ok, status, time.monotonic()))
        return status, answer

    def statuses(self) -> Counter[int]:
        with self.lock:
            return Counter(p.status for p in self.posts)


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _UpstreamServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/echo"):
            # For the proxy's own tests: the body back, and the headers that arrived.
            status = 200
            headers = [("X-Seen-Headers", ",".join(sorted(k.lower() for k in self.headers)))]
            answer = body
        else:
            status, answer = self.server.receiver.handle(self.headers, body)
            headers = [("Content-Type", "application/json")]
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    receiver: Receiver


@pytest.fixture
def receiver() -> Receiver:
    return Receiver(secret=SECRET)


@pytest.fixture
def endpoint(receiver: Receiver) -> Iterator[str]:
    server = _UpstreamServer(("127.0.0.1", 0), _Upstream)
    server.receiver = receiver
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/meterclose"
    server.shutdown()
    server.server_close()
    thread.join()


# -- an outbox of realistic events -----------------------------------------------------


def month_events(period: str = PERIOD, contracts: int = 6, first: int = 1) -> list[dict[str, Any]]:
    """A month's close events from small invoice, usage and contract tables, plus an
    approval: what the close queues. Contracts are numbered from ``first``."""
    numbers = range(first, first + contracts)
    ids = [f"C-{i:04d}" for i in numbers]
    start = date.fromisoformat(f"{period}-01")
    contract_frame = pl.DataFrame(
        {
            "contract_id": ids,
            "customer_id": [f"CUST-{i:04d}" for i in numbers],
            "plan_id": ["growth-usd"] * contracts,
            "start_date": [start] * contracts,
            "end_date": [None] * contracts,
            "billing_alignment": ["calendar"] * contracts,
        },
        schema_overrides={"end_date": pl.Date},
    )
    money = pl.Decimal(18, 6)
    billable = pl.DataFrame(
        {
            "contract_id": ids,
            "customer_id": [f"CUST-{i:04d}" for i in numbers],
            "currency": ["USD"] * contracts,
            "amount": [Decimal("125.50") * i for i in numbers],
            "amount_precise": [Decimal("125.504") * i for i in numbers],
            "event_count": [1000 * i for i in numbers],
        },
        schema_overrides={"amount": money, "amount_precise": money},
    )
    rows = []
    for i, contract in zip(numbers, ids, strict=True):
        for line in range(2):
            rows.append(
                {
                    "document_type": "invoice",
                    "invoice_id": f"INV-{period}-{i:04d}",
                    "line_id": f"L-{period}-{i:04d}-{line}",
                    "invoice_date": date.fromisoformat(f"{period}-30"),
                    "entity_id": "US01",
                    "customer_id": f"CUST-{i:04d}",
                    "contract_id": contract,
                    "currency": "USD",
                    "amount": Decimal("1200.00") if line == 0 else Decimal("125.50") * i,
                    "service_period": period,
                }
            )
    rows.append({**rows[0], "document_type": "credit_memo", "invoice_id": f"CM-{period}-0001"})
    rows[-1].update(line_id=f"L-{period}-CM-0", amount=Decimal("-50.00"))
    invoices = pl.DataFrame(rows, schema_overrides={"amount": money})
    events = close_events(period, invoices, billable, contract_frame).to_dicts()
    events.append(approval_event(period, "US01", "erin", "ab" * 32, 3, 42))
    return events


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ControlDb]:
    control = ControlDb(f"sqlite:///{tmp_path / 'control.db'}")
    control.migrate()
    yield control
    control.dispose()


def outbox(db: ControlDb) -> dict[str, dict[str, Any]]:
    return {row["event_id"]: row for row in db.outbox()}


def deliver(db: ControlDb, url: str, **options: Any) -> DeliveryReport:
    settings: dict[str, Any] = {
        "secret": SECRET,
        "policy": FAST,
        "rate_per_second": 0,
        "concurrency": 4,
    }
    return deliver_events(db, url, **{**settings, **options})


def assert_each_held_once(receiver: Receiver, db: ControlDb) -> None:
    """The receiver holds every outbox event, once, with its exact payload bytes."""
    rows = outbox(db)
    assert set(receiver.store) == set(rows)
    for event_id, row in rows.items():
        assert receiver.store[event_id] == row["payload"].encode()
        assert hashlib.sha256(receiver.store[event_id]).hexdigest() == row["payload_sha256"]
        assert row["state"] == "confirmed", (event_id, row["last_error"])
    assert all(p.signature_ok for p in receiver.posts)


# -- delivery --------------------------------------------------------------------------


def test_events_arrive_once_through_delays_throttling_errors_and_drops(
    db: ControlDb, receiver: Receiver, endpoint: str
) -> None:
    events = month_events()
    assert db.enqueue_events(events) == len(events) == 20
    plan = Plan(
        at={
            1: Fault.delay(0.3),
            2: Fault.throttle(retry_after=1),
            3: Fault.error(500),
            4: Fault.drop_before(),
            5: Fault.drop_after(),
            7: [Fault.delay(0.1), Fault.error(502)],
            9: Fault.error(503),
            11: Fault.drop_after(reset=True),
            13: Fault.drop_before(reset=True),
        },
        chances=[
            (0.12, Fault.drop_after()),
            (0.08, Fault.drop_before()),
            (0.08, Fault.error(503)),
            (0.05, Fault.delay(0.05)),
        ],
        seed=5,
    )
    with FaultyProxy(endpoint.rsplit("/hooks", 1)[0], plan) as proxy:
        report = deliver(db, proxy.url + "/hooks/meterclose")

    assert report.confirmed == 20 and report.rejected == report.failed == 0, report.summary()
    assert report.states == {"confirmed": 20}
    assert_each_held_once(receiver, db)
    # Every fault kind really happened, and the dropped answers were re-sent and
    # recognised: each request the upstream processed but whose answer was lost came
    # again, and the receiver answered 409 to the repeat.
    for kind in ("delay", "throttle", "error", "drop_before", "drop_after"):
        assert proxy.injected[kind] >= 1, (kind, proxy.injected)
    assert receiver.statuses()[409] >= proxy.injected["drop_after"]
    assert report.already_delivered >= 1
    assert len(receiver.posts) == len(proxy.forwarded)
    # urllib3 retried within one attempt: no event needed a second run.
    assert {row["attempts"] for row in outbox(db).values()} == {1}
    assert all(p.event_type == outbox(db)[p.key]["event_type"] for p in receiver.posts)

    # A rerun with nothing pending sends nothing.
    before = len(receiver.posts)
    again = deliver(db, endpoint)
    assert again.attempted == 0 and len(receiver.posts) == before


def test_headers_follow_the_contract(db: ControlDb, endpoint: str) -> None:
    db.enqueue_events(month_events(contracts=1)[:1])
    seen: list[dict[str, str]] = []

    class Recorder(_Upstream):
        def do_POST(self) -> None:
            seen.append(dict(self.headers))
            super().do_POST()

    server = _UpstreamServer(("127.0.0.1", 0), Recorder)
    server.receiver = Receiver(secret=SECRET)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        deliver(db, f"http://127.0.0.1:{server.server_port}/hook")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    (row,) = db.outbox()
    (headers,) = seen
    body = row["payload"].encode()
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == row["event_id"]
    assert headers["X-Meterclose-Event-Type"] == row["event_type"] == "ContractActivated"
    assert headers["X-Meterclose-Schema-Version"] == "1"
    assert headers["X-Meterclose-Correlation-Id"] == row["correlation_id"] == "C-0001:2026-09"
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Meterclose-Signature"] == f"sha256={expected}"


def test_a_business_rejection_is_kept_with_the_reason_and_not_retried(
    db: ControlDb, receiver: Receiver, endpoint: str
) -> None:
    receiver.reject = frozenset({"CreditMemoCreated"})
    db.enqueue_events(month_events())
    report = deliver(db, endpoint)
    assert (report.confirmed, report.rejected, report.failed) == (19, 1, 0)
    assert report.states == {"confirmed": 19, "rejected": 1}
    memo = outbox(db)["CreditMemoCreated:CM-2026-09-0001"]
    assert memo["state"] == "rejected" and memo["attempts"] == 1
    assert memo["last_error"].startswith("HTTP 400: ")
    assert "CreditMemoCreated refused: period 2026-09 is closed in the ledger" in memo["last_error"]
    assert [r.event_id for r in report.rejections] == [memo["event_id"]]
    # Sent once: a business answer is not retried, neither by urllib3 nor by a rerun.
    posts = [p for p in receiver.posts if p.key == memo["event_id"]]
    assert [p.status for p in posts] == [400]
    again = deliver(db, endpoint)
    assert again.attempted == 0
    assert [p.key for p in receiver.posts].count(memo["event_id"]) == 1
    assert outbox(db)[memo["event_id"]]["state"] == "rejected"


def test_the_receivers_message_is_truncated(
    db: ControlDb, receiver: Receiver, endpoint: str
) -> None:
    long_reason = "y" * 50_000

    def handle(headers: Any, body: bytes) -> tuple[int, bytes]:
        return 422, long_reason.encode()

    receiver.handle = handle  # type: ignore[method-assign]
    db.enqueue_events(month_events(contracts=1)[:1])
    report = deliver(db, endpoint)
    assert report.rejected == 1
    (row,) = db.outbox()
    assert row["state"] == "rejected"
    assert row["last_error"].startswith("HTTP 422: yyy") and len(row["last_error"]) <= 2000


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_endpoint_leaves_events_for_the_next_run(
    db: ControlDb, receiver: Receiver, endpoint: str
) -> None:
    db.enqueue_events(month_events())
    # Credentials in the URL and a token in its query must not reach the outbox.
    down = f"http://hook-user:hunter2@127.0.0.1:{unused_port()}/hook?token=t0k3n-abc"
    policy = RetryPolicy(attempts=2, backoff_seconds=0.01, jitter_seconds=0, timeout_seconds=2)
    report = deliver(db, down, policy=policy, concurrency=1, max_consecutive_failures=3)
    assert report.stopped_early
    assert (report.confirmed, report.rejected, report.failed) == (0, 0, 3)
    assert report.not_attempted == 17
    assert report.states == {"sent": 3, "pending": 17}
    assert "stopped after 3 technical failures in a row, 17 events left" in report.summary()
    rows = sorted(outbox(db).values(), key=lambda r: (r["created_at"], r["event_id"]))
    for row in rows[:3]:
        assert row["state"] == "sent" and row["attempts"] == 1
        assert "ConnectionError" in row["last_error"]
        for secret in ("hunter2", "t0k3n-abc", SECRET):
            assert secret not in row["last_error"]
            assert secret not in report.summary()
    assert {r["state"] for r in rows[3:]} == {"pending"}

    # Without a stop, every event is tried and left sent.
    report = deliver(db, down, policy=policy, concurrency=2, max_consecutive_failures=None)
    assert report.failed == 20 and not report.stopped_early
    assert report.states == {"sent": 20}

    # The endpoint comes back: each event is delivered once.
    report = deliver(db, endpoint)
    assert report.confirmed == 20 and report.states == {"confirmed": 20}
    assert_each_held_once(receiver, db)
    assert len(receiver.posts) == 20
    attempts = Counter(row["attempts"] for row in outbox(db).values())
    assert attempts == {3: 3, 2: 17}
    assert all(row["last_error"] is None for row in outbox(db).values())


def test_a_payload_changed_after_delivery_follows_as_a_new_event(
    db: ControlDb, receiver: Receiver, endpoint: str
) -> None:
    events = month_events()
    db.enqueue_events(events)
    assert deliver(db, endpoint).confirmed == 20
    # The close is rerun after a correction: one invoice's total changed.
    changed = month_events()
    invoice = next(e for e in changed if e["event_id"] == "InvoiceIssued:INV-2026-09-0002")
    payload = json.loads(invoice["payload"])
    payload["data"]["total"] = "1500.00"
    invoice["payload"] = json.dumps(payload, separators=(",", ":"))
    invoice["payload_sha256"] = hashlib.sha256(invoice["payload"].encode()).hexdigest()
    assert db.enqueue_events(changed) == 1
    report = deliver(db, endpoint)
    assert report.confirmed == 1 and report.states == {"confirmed": 21}
    follow_up = f"InvoiceIssued:INV-2026-09-0002#{invoice['payload_sha256'][:8]}"
    assert receiver.posts[-1].key == follow_up
    assert receiver.store[follow_up] == invoice["payload"].encode()
    # The original stays as it was delivered.
    original = next(e for e in events if e["event_id"] == "InvoiceIssued:INV-2026-09-0002")
    assert receiver.store["InvoiceIssued:INV-2026-09-0002"] == original["payload"].encode()
    assert len(receiver.posts) == 21


def test_period_and_limit_select_what_is_delivered(
    db: ControlDb, receiver: Receiver, endpoint: str
) -> None:
    db.enqueue_events(month_events("2026-09", contracts=2))
    db.enqueue_events(month_events("2026-10", contracts=2, first=101))
    report = deliver(db, endpoint, period="2026-10", limit=3, concurrency=1)
    assert report.confirmed == 3
    assert report.states == {"confirmed": 3, "pending": 5}
    assert {p.key.split(":")[0] for p in receiver.posts} <= {
        "ContractActivated",
        "CreditMemoCreated",
        "InvoiceIssued",
        "RevenueJournalApproved",
        "UsageRated",
    }
    assert all(outbox(db)[p.key]["period"] == "2026-10" for p in receiver.posts)
    # Delivered in (created_at, event_id) order.
    october = sorted(
        (r for r in outbox(db).values() if r["period"] == "2026-10"),
        key=lambda r: (r["created_at"], r["event_id"]),
    )
    assert [p.key for p in receiver.posts] == [r["event_id"] for r in october[:3]]


def test_the_rate_limit_is_shared_by_the_threads(
    db: ControlDb, receiver: Receiver, endpoint: str
) -> None:
    events = month_events(contracts=7)[:21]
    db.enqueue_events(events)
    report = deliver(db, endpoint, rate_per_second=10, concurrency=4)
    assert report.confirmed == 21
    times = sorted(p.at for p in receiver.posts)
    # At most 10 requests in any second, whatever the four threads do...
    assert all(later - earlier >= 0.9 for earlier, later in zip(times, times[10:], strict=False))
    # ...so 21 requests span two full windows.
    assert times[-1] - times[0] >= 1.9


def test_a_publisher_killed_mid_request_leaves_the_event_sent_and_a_rerun_finishes_once(
    db: ControlDb, receiver: Receiver, endpoint: str
) -> None:
    db.enqueue_events(month_events())
    publisher: list[subprocess.Popen[bytes]] = []
    script = (
        "import sys\n"
        "from resources.control_db import ControlDb\n"
        "from resources.http import RetryPolicy\n"
        "from resources.webhook import deliver_events\n"
        "deliver_events(ControlDb(sys.argv[1]), sys.argv[2], secret=sys.argv[3],\n"
        "    policy=RetryPolicy(attempts=2, backoff_seconds=0.01), rate_per_second=0,\n"
        "    concurrency=1)\n"
    )
    # The kill lands after the receiver has the fifth event and before its answer returns.
    plan = Plan(hooks={5: lambda n: publisher[0].kill()})
    with FaultyProxy(endpoint.rsplit("/hooks", 1)[0], plan) as proxy:
        publisher.append(
            subprocess.Popen(
                [sys.executable, "-c", script, db.url, proxy.url + "/hooks/meterclose", SECRET],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        )
        assert publisher[0].wait(timeout=60) == -9
    assert not proxy.hook_errors
    rows = sorted(outbox(db).values(), key=lambda r: (r["created_at"], r["event_id"]))
    assert [r["state"] for r in rows[:5]] == ["confirmed"] * 4 + ["sent"]
    assert {r["state"] for r in rows[5:]} == {"pending"}
    in_flight = rows[4]["event_id"]
    assert in_flight in receiver.store and len(receiver.store) == 5

    report = deliver(db, endpoint)
    assert report.confirmed == 16 and report.already_delivered == 1
    assert_each_held_once(receiver, db)
    assert [p.status for p in receiver.posts if p.key == in_flight] == [200, 409]
    assert outbox(db)[in_flight]["attempts"] == 2


def test_the_resource_signs_with_the_secret_from_the_environment(
    db: ControlDb, receiver: Receiver, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.enqueue_events(month_events(contracts=1))
    resource = WebhookResource(endpoint=endpoint, secret_env="TEST_WEBHOOK_SECRET")
    monkeypatch.delenv("TEST_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ValueError, match="TEST_WEBHOOK_SECRET is not set"):
        resource.deliver(db)
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    report = resource.deliver(db)
    assert report.confirmed == 5
    assert_each_held_once(receiver, db)


# -- PostgreSQL ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if not postgres.available():
        pytest.skip("PostgreSQL 15 binaries not installed")
    with postgres.cluster() as url:
        yield url


def test_two_publishers_on_postgresql_through_faults_deliver_each_event_once(
    postgres_url: str, receiver: Receiver, endpoint: str
) -> None:
    db = ControlDb(postgres_url)
    db.migrate()
    try:
        db.enqueue_events(month_events(contracts=10))
        plan = Plan(
            at={2: Fault.throttle(1), 4: Fault.drop_after()},
            chances=[(0.15, Fault.drop_after()), (0.1, Fault.error(502))],
            seed=11,
        )
        reports: list[DeliveryReport] = []
        with FaultyProxy(endpoint.rsplit("/hooks", 1)[0], plan) as proxy:
            url = proxy.url + "/hooks/meterclose"
            threads = [
                threading.Thread(target=lambda: reports.append(deliver(db, url))) for _ in range(2)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert proxy.injected["drop_after"] >= 1
        assert sum(r.confirmed for r in reports) >= 32
        assert sum(r.failed + r.rejected for r in reports) == 0
        assert_each_held_once(receiver, db)
    finally:
        with db.engine.begin() as conn:
            conn.execute(sa.delete(event_outbox))
        db.dispose()


# -- the proxy itself ------------------------------------------------------------------


def test_the_proxy_carries_large_bodies_both_ways_on_kept_alive_concurrent_connections(
    endpoint: str,
) -> None:
    base = endpoint.rsplit("/hooks", 1)[0]
    payload = os.urandom(3 * 1024 * 1024)
    errors: list[BaseException] = []

    def client(seed: int) -> None:
        try:
            with requests.Session() as s:
                for i in range(3):
                    body = payload[seed + i :] + bytes([seed, i])
                    r = s.post(
                        f"{proxy.url}/echo/{seed}/{i}",
                        data=body,
                        headers={"Connection": "keep-alive", "Keep-Alive": "timeout=5"},
                        timeout=30,
                    )
                    assert r.status_code == 200 and r.content == body
                    seen = r.headers["X-Seen-Headers"].split(",")
                    assert "keep-alive" not in seen and "content-length" in seen
        except BaseException as exc:
            errors.append(exc)

    with FaultyProxy(base) as proxy:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    assert len(proxy.forwarded) == proxy.requests == 18
    assert {e.path.split("/")[2] for e in proxy.exchanges} == {str(k) for k in range(6)}
    assert all(e.answered and e.status == 200 for e in proxy.exchanges)


def test_the_proxy_schedule_is_seeded_and_can_spare_requests() -> None:
    plan = Plan(chances=[(0.25, Fault.drop_after()), (0.25, Fault.error(503))], seed=3)
    draws = [plan.faults(n) for n in range(1, 401)]
    assert draws == [Plan(chances=plan.chances, seed=3).faults(n) for n in range(1, 401)]
    kinds = Counter(f[0].kind if f else "none" for f in draws)
    assert 60 < kinds["drop_after"] < 140 and 60 < kinds["error"] < 140
    assert draws != [Plan(chances=plan.chances, seed=4).faults(n) for n in range(1, 401)]
    assert Plan(at={3: Fault.delay(1)}, chances=plan.chances).faults(3) == [Fault.delay(1)]
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")


def test_the_proxy_faults_only_matching_requests_and_reports_a_dead_upstream(
    endpoint: str,
) -> None:
    base = endpoint.rsplit("/hooks", 1)[0]
    plan = Plan(
        at={1: Fault.error(503)},
        match=lambda method, path, body: b"fail-me" in body,
    )
    with FaultyProxy(base, plan) as proxy:
        ok = requests.post(f"{proxy.url}/echo", data=b"hello", timeout=5)
        failed = requests.post(f"{proxy.url}/echo", data=b"fail-me", timeout=5)
        dropped_then = requests.post(f"{proxy.url}/echo", data=b"fail-me too", timeout=5)
    assert (ok.status_code, failed.status_code, dropped_then.status_code) == (200, 503, 200)
    assert [e.n for e in proxy.exchanges] == [None, 1, 2]
    assert proxy.injected == {"error": 1}
    with FaultyProxy(f"http://127.0.0.1:{unused_port()}") as proxy:
        r = requests.post(f"{proxy.url}/x", data=b"x", timeout=5)
    assert r.status_code == 502 and proxy.injected["upstream_error"] == 1


def test_the_proxy_passes_head_and_empty_answers_through(endpoint: str) -> None:
    base = endpoint.rsplit("/hooks", 1)[0]
    with FaultyProxy(base, Plan(at={2: Fault.delay(0.2)})) as proxy, requests.Session() as s:
        head = s.head(f"{proxy.url}/echo", timeout=5)
        started = time.monotonic()
        after = s.post(f"{proxy.url}/echo", data=b"still in step", timeout=5)
        delayed = time.monotonic() - started
    assert head.status_code == 501  # the upstream has no HEAD handler: http.server says so
    assert after.status_code == 200 and after.content == b"still in step"
    assert delayed >= 0.2 and proxy.injected == {"delay": 1}
