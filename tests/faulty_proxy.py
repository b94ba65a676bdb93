"""A fault-injecting HTTP proxy on loopback, for tests of clients that must survive a bad
network: delays, throttling, server errors and dropped connections, by request number or
by a seeded random schedule.

    plan = Plan(
        at={2: Fault.error(503), 4: Fault.drop_after(), 5: [Fault.delay(0.3), Fault.throttle(1)]},
        chances=[(0.2, Fault.drop_before()), (0.1, Fault.delay(0.05))],
        seed=7,
        hooks={6: lambda n: publisher.kill()},
    )
    with FaultyProxy("http://127.0.0.1:8000", plan) as proxy:
        client.post(proxy.url + "/hook", ...)
    assert proxy.injected["drop_after"] == 1

Requests are numbered from 1 in the order they arrive (only those ``plan.match`` accepts,
when it is set; the others pass through untouched). A request's faults are those of
``plan.at`` for its number, else the first of ``plan.chances`` its seeded draw hits (the
draw depends only on the seed and the number, not on thread timing). Delays apply first;
then the first fault that decides the answer:

- ``throttle``: answer 429 with ``Retry-After: <seconds>``, without forwarding;
- ``error``: answer the status (500, 502, 503…) without forwarding;
- ``drop_before``: read the request, then close the connection without answering (or
  reset it), without forwarding;
- ``drop_after``: forward the request — the upstream processes it — then close the
  connection instead of answering: the case that tests exactly-once.

Anything else is forwarded: method, path (under the upstream URL's path), headers less
hop-by-hop ones, and body; the upstream's status, headers and body come back. Each client
connection gets its own upstream connection, kept alive as long as the client's.

Hooks run after request N reached the upstream (or its fault was decided) and before the
client gets its answer: a hook that kills the client process leaves that request in
flight, deterministically.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
DECISIVE = ("throttle", "error", "drop_before", "drop_after")


@dataclass(frozen=True)
class Fault:
    """One fault: ``kind`` is delay, throttle, error, drop_before or drop_after."""

    kind: str
    seconds: float = 0.0  # delay: how long; throttle: the Retry-After value
    status: int = 500  # error: the status answered
    reset: bool = False  # drop_before / drop_after: a TCP reset instead of a clean close

    def __post_init__(self) -> None:
        if self.kind not in ("delay", *DECISIVE):
            raise ValueError(f"unknown fault kind {self.kind!r}; expected delay or {DECISIVE}")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        return cls("delay", seconds=seconds)

    @classmethod
    def throttle(cls, retry_after: int = 1) -> Fault:
        return cls("throttle", seconds=retry_after)

    @classmethod
    def error(cls, status: int = 500) -> Fault:
        return cls("error", status=status)

    @classmethod
    def drop_before(cls, *, reset: bool = False) -> Fault:
        return cls("drop_before", reset=reset)

    @classmethod
    def drop_after(cls, *, reset: bool = False) -> Fault:
        return cls("drop_after", reset=reset)


Hook = Callable[[int], None]
Match = Callable[[str, str, bytes], bool]


@dataclass(frozen=True)
class Plan:
    """Which faults to inject into which requests (see the module docstring)."""

    at: Mapping[int, Fault | Sequence[Fault]] = field(default_factory=dict)
    chances: Sequence[tuple[float, Fault]] = ()
    seed: int = 0
    hooks: Mapping[int, Hook] = field(default_factory=dict)
    # (method, path, body) → whether the request is numbered and subject to the plan.
    match: Match | None = None

    def faults(self, n: int) -> list[Fault]:
        if n in self.at:
            planned = self.at[n]
            return [planned] if isinstance(planned, Fault) else list(planned)
        draw = random.Random(f"{self.seed}:{n}").random()
        for chance, fault in self.chances:
            if draw < chance:
                return [fault]
            draw -= chance
        return []


@dataclass(frozen=True)
class Exchange:
    """One request the proxy saw and what became of it."""

    n: int | None  # its number in the plan; None when plan.match passed it through
    method: str
    path: str
    request_bytes: int
    faults: tuple[str, ...]
    forwarded: bool
    status: int | None  # what the upstream answered, when forwarded
    answered: bool  # whether the client got an answer
    started: float
    elapsed: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive handler threads wait for their client's next request: never join them.
    block_on_close = False

    proxy: FaultyProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    # An idle keep-alive connection is closed after this long.
    timeout = 60

    def setup(self) -> None:
        super().setup()
        self._upstream: http.client.HTTPConnection | None = None
        self.server.proxy._opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._upstream is not None:
                self._upstream.close()
            self.server.proxy._closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _proxy(self) -> None:
        self.server.proxy._handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _proxy

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def forward(
        self, target: tuple[str, str, int], base: str, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        scheme, host, port = target
        connection_header = {
            token.strip().lower() for token in self.headers.get("Connection", "").split(",")
        }
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in HOP_BY_HOP
            and name.lower() not in connection_header
            and name.lower() not in ("host", "content-length")
        }
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        path = base.rstrip("/") + self.path
        # One retry, and only on a kept-alive connection: the upstream may have closed it
        # while it was idle, before our request reached it.
        for retry in (True, False):
            reused = self._upstream is not None
            if self._upstream is None:
                cls = (
                    http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
                )
                self._upstream = cls(host, port, timeout=self.server.proxy.upstream_timeout)
            try:
                self._upstream.request(self.command, path, body=body, headers=headers)
                response = self._upstream.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._upstream.close()
                self._upstream = None
                if retry and reused:
                    continue
                raise
            if response.will_close:
                self._upstream.close()
                self._upstream = None
            return response.status, response.getheaders(), data
        raise AssertionError("unreachable")

    def answer(self, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        # The body is re-framed with its own length (the upstream may have chunked it);
        # a HEAD answer keeps the upstream's length, and 204/304 carry none.
        bodiless = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        self.send_response(status)
        for name, value in headers:
            lower = name.lower()
            if lower not in HOP_BY_HOP and (lower != "content-length" or bodiless):
                self.send_header(name, value)
        if not bodiless:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not bodiless:
            self.wfile.write(body)
        self.wfile.flush()

    def drop(self, reset: bool) -> None:
        self.close_connection = True
        if reset:
            # SO_LINGER with a zero timeout: the close sends RST instead of FIN (the socket
            # really closes once the handler's files are closed, at the end of the request).
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class FaultyProxy:
    """The proxy, as a context manager: ``with FaultyProxy(upstream, plan) as proxy:``
    then send requests to ``proxy.url``; see the module docstring."""

    def __init__(
        self, upstream_url: str, plan: Plan | None = None, *, upstream_timeout: float = 60.0
    ) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"upstream URL {upstream_url!r}: expected http(s)://host[:port][/path]"
            )
        default_port = 443 if parts.scheme == "https" else 80
        self._target = (parts.scheme, parts.hostname, parts.port or default_port)
        self._base = parts.path
        self.plan = plan or Plan()
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._numbered = 0
        self._connections: set[socket.socket] = set()
        self.exchanges: list[Exchange] = []
        # Counters by fault kind (delay, throttle, error, drop_before, drop_after), plus
        # upstream_error when the upstream could not be reached (answered 502).
        self.injected: Counter[str] = Counter()
        self.hook_errors: list[BaseException] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultyProxy:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for connection in list(self._connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self._server = None

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "the proxy is not running"
        return f"http://127.0.0.1:{self._server.server_port}"

    # -- what happened -------------------------------------------------------------------

    @property
    def forwarded(self) -> list[Exchange]:
        """Requests the upstream received (including those whose answer was dropped)."""
        with self._lock:
            return [e for e in self.exchanges if e.forwarded]

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.exchanges)

    # -- the work ------------------------------------------------------------------------

    def _opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _handle(self, handler: _Handler) -> None:
        started = time.monotonic()
        body = handler.read_body()
        n: int | None = None
        faults: list[Fault] = []
        if self.plan.match is None or self.plan.match(handler.command, handler.path, body):
            with self._lock:
                self._numbered += 1
                n = self._numbered
            faults = self.plan.faults(n)
        kinds = tuple(f.kind for f in faults)
        for fault in faults:
            if fault.kind == "delay":
                time.sleep(fault.seconds)
        decisive = next((f for f in faults if f.kind in DECISIVE), None)
        forwarded = False
        status: int | None = None
        answer: tuple[int, list[tuple[str, str]], bytes] | None = None
        if decisive is None or decisive.kind == "drop_after":
            try:
                answer = handler.forward(self._target, self._base, body)
                forwarded = True
                status = answer[0]
            except (OSError, http.client.HTTPException) as exc:
                # The upstream is down or hung up: what a gateway says.
                kinds += ("upstream_error",)
                message = f"faulty proxy: upstream unreachable: {exc}".encode()
                answer = (502, [("Content-Type", "text/plain")], message)
        elif decisive.kind == "throttle":
            retry_after = str(int(decisive.seconds))
            answer = (
                429,
                [("Retry-After", retry_after), ("Content-Type", "text/plain")],
                b"slow down",
            )
        elif decisive.kind == "error":
            answer = (decisive.status, [("Content-Type", "text/plain")], b"injected fault")
        with self._lock:
            self.injected.update(kinds)
        if n is not None and n in self.plan.hooks:
            try:
                self.plan.hooks[n](n)
            except BaseException as exc:  # a test's hook: keep it for the test to see
                self.hook_errors.append(exc)
        answered = False
        if decisive is not None and decisive.kind in ("drop_before", "drop_after"):
            handler.drop(decisive.reset)
        elif answer is not None:
            try:
                handler.answer(*answer)
                answered = True
            except OSError:
                handler.close_connection = True  # the client went away meanwhile
        with self._lock:
            self.exchanges.append(
                Exchange(
                    n=n,
                    method=handler.command,
                    path=handler.path,
                    request_bytes=len(body),
                    faults=kinds,
                    forwarded=forwarded,
                    status=status,
                    answered=answered,
                    started=started,
                    elapsed=time.monotonic() - started,
                )
            )
