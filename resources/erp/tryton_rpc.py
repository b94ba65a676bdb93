"""A small JSON-RPC client for Tryton: session login, context, typed errors.

Errors fall in three kinds a publisher treats differently: business rejections
(`TrytonUserError`, never retried), authentication (`TrytonAuthError`, after one
automatic re-login) and transport faults (`TrytonTransportError`: 5xx, 429, timeouts,
dropped connections; retry them). Retries belong to the caller or to the urllib3 Retry
mounted on the session passed in; this client never loops.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import requests

logger = logging.getLogger(__name__)

# Domain-validation errors carry every field definition of the model (about 30 kB).
MESSAGE_LIMIT = 2000

# Exception names Tryton reports as `["Name", args]` in an HTTP 200 body.
TRYTON_EXCEPTIONS = frozenset(
    {"UserError", "UserWarning", "LoginException", "ConcurrencyException"}
)


class TrytonError(Exception):
    """Base class of everything this client raises."""


class TrytonUserError(TrytonError):
    """A business rejection: closed period, unbalanced move, invalid account, access.

    `details` is Tryton's `[kind, [message, description]]`; a domain-validation error's
    domain and field definitions (about 30 kB) are kept apart in `domain`.
    """

    def __init__(
        self,
        message: str,
        details: Any = None,
        kind: str = "UserError",
        domain: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.kind = kind
        self.domain = domain


class TrytonServerError(TrytonError):
    """An unexpected server-side exception reported in an HTTP 200 body (not a UserError).

    A unique index we created ourselves arrives like this: PostgreSQL's message, no
    Tryton translation, because Tryton only translates the constraints it declares.
    """

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def unique_violation(self) -> bool:
        return "duplicate key value violates unique constraint" in self.message


class TrytonAuthError(TrytonError):
    """Login refused, or a session refused again right after a fresh login."""


class TrytonRequestError(TrytonError):
    """The server refused the request itself (400, 403, 404, 422): fix the call, not retry."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class TrytonTransportError(TrytonError):
    """A fault worth retrying: 5xx, 429, timeout, connection reset, unreadable response."""

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def _truncate(text: str, limit: int = MESSAGE_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


def _encode(value: Any) -> Any:
    # Tryton's JSON marshalling: typed objects carry a __class__ member.
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {
            "__class__": "datetime",
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, bytes | bytearray):
        return {"__class__": "bytes", "base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot send {type(value).__name__} to Tryton")


def _decode(obj: dict[str, Any]) -> Any:
    kind = obj.get("__class__")
    if kind == "Decimal":
        return Decimal(obj["decimal"])
    if kind == "date":
        return dt.date(obj["year"], obj["month"], obj["day"])
    if kind == "datetime":
        return dt.datetime(  # noqa: DTZ001 - Tryton datetimes are naive UTC
            obj["year"],
            obj["month"],
            obj["day"],
            obj["hour"],
            obj["minute"],
            obj["second"],
            obj["microsecond"],
        )
    if kind == "time":
        return dt.time(obj["hour"], obj["minute"], obj["second"], obj["microsecond"])
    if kind == "timedelta":
        return dt.timedelta(seconds=obj["seconds"])
    if kind == "bytes":
        return base64.b64decode(obj["base64"])
    return obj


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; urllib3's Retry understands those, we do not need to


class TrytonClient:
    """JSON-RPC to one Tryton database as one user."""

    def __init__(
        self,
        url: str,
        database: str,
        login: str,
        password: str,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (10.0, 120.0),
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.login_name = login
        self._password = password
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout
        self.endpoint = f"{self.url}/{database}/rpc/"
        self.user_id: int | None = None
        self._authorization: str | None = None
        self._context: dict[str, Any] | None = None
        self._ids = 0

    def __repr__(self) -> str:
        return f"TrytonClient({self.endpoint!r}, login={self.login_name!r})"

    # -- session ---------------------------------------------------------------------

    def login(self) -> int:
        """Open a session; return the user id."""
        params = [self.login_name, {"password": self._password}, "en"]
        try:
            result = self._post("common.db.login", params)
        except TrytonServerError as error:
            if "res.user" not in error.message:
                raise
            # trytond 8.2 fails a login that is the first request for a database (its pool
            # is registered empty); GET /<db>/r/… loads the pool. Then log in again, once.
            try:
                self.session.get(f"{self.url}/{self.database}/r/meterclose-warm-up")
            except requests.RequestException as exc:
                raise TrytonTransportError(
                    f"{self.endpoint}: loading the database failed: {type(exc).__name__}"
                ) from exc
            result = self._post("common.db.login", params)
        user_id, token = result[0], result[1]
        self.user_id = int(user_id)
        credentials = f"{self.login_name}:{user_id}:{token}".encode()
        self._authorization = "Session " + base64.b64encode(credentials).decode("ascii")
        return self.user_id

    def logout(self) -> None:
        if self._authorization is not None:
            self._post("common.db.logout", [])
            self._authorization = None

    @property
    def context(self) -> dict[str, Any]:
        """The user's preferences context, fetched once per client."""
        if self._context is None:
            self._context = dict(self.call("model.res.user.get_preferences", True, context={}))
        return self._context

    # -- calls -----------------------------------------------------------------------

    def call(self, method: str, *params: Any, context: Mapping[str, Any] | None = None) -> Any:
        """Call a method; `model.*`, `wizard.*` and `report.*` get the user's context last."""
        args = list(params)
        if method.split(".", 1)[0] in {"model", "wizard", "report"}:
            if method == "model.res.user.get_preferences":
                base: dict[str, Any] = {}
            else:
                base = dict(self.context)
            if context:
                base.update(context)
            args.append(base)
        if self._authorization is None:
            self.login()
        try:
            return self._post(method, args)
        except _Unauthorized:
            # Sessions expire (and `post` wants a fresh one): log in again, once.
            logger.info("Tryton session refused for %s; logging in again", method)
            self.login()
            try:
                return self._post(method, args)
            except _Unauthorized as again:
                raise TrytonAuthError(
                    f"{self.endpoint}: {method} refused right after a fresh login "
                    f"as {self.login_name!r}"
                ) from again

    def search_read(
        self,
        model: str,
        domain: Sequence[Any],
        fields: Sequence[str],
        order: Sequence[tuple[str, str]] | None = None,
        limit: int | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Records matching `domain`. A related field such as `"account.code"` comes back
        nested: `{"account.": {"id": 7, "code": "1100"}}` (None when the link is empty)."""
        ordering = [list(pair) for pair in order] if order is not None else None
        return list(
            self.call(
                f"model.{model}.search_read",
                list(domain),
                0,
                limit,
                ordering,
                list(fields),
                context=context,
            )
        )

    def search(
        self,
        model: str,
        domain: Sequence[Any],
        limit: int | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[int]:
        return list(
            self.call(f"model.{model}.search", list(domain), 0, limit, None, context=context)
        )

    def read(
        self,
        model: str,
        ids: Sequence[int],
        fields: Sequence[str],
        context: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        return list(self.call(f"model.{model}.read", list(ids), list(fields), context=context))

    def create(
        self,
        model: str,
        values_list: Sequence[Mapping[str, Any]],
        context: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """Create records in one transaction; return their ids in order."""
        return list(
            self.call(f"model.{model}.create", [dict(v) for v in values_list], context=context)
        )

    def execute(
        self,
        model: str,
        method: str,
        ids: Sequence[int],
        context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run a method or button on records, e.g. `execute("account.move", "post", ids)`."""
        return self.call(f"model.{model}.{method}", list(ids), context=context)

    # -- transport -------------------------------------------------------------------

    def _post(self, method: str, params: list[Any]) -> Any:
        self._ids += 1
        body = json.dumps(
            {"id": self._ids, "method": method, "params": params},
            default=_encode,
            separators=(",", ":"),
        )
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._authorization is not None and method != "common.db.login":
            headers["Authorization"] = self._authorization
        started = time.monotonic()
        try:
            response = self.session.post(
                self.endpoint, data=body.encode(), headers=headers, timeout=self.timeout
            )
        except requests.RequestException as exc:
            # Timeouts, resets, exhausted urllib3 retries: the caller decides to retry.
            raise TrytonTransportError(
                f"{self.endpoint}: {method} failed in transport: {type(exc).__name__}: {exc}"
            ) from exc
        logger.debug(
            "tryton %s -> %s in %.0f ms",
            method,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        status = response.status_code
        if status == 401:
            if method == "common.db.login":
                raise TrytonAuthError(
                    f"{self.endpoint}: login refused for {self.login_name!r} (HTTP 401)"
                )
            raise _Unauthorized(method)
        if status == 429 or status >= 500:
            raise TrytonTransportError(
                _http_message(self.endpoint, method, response),
                status=status,
                retry_after=_retry_after(response),
            )
        if status != 200:
            # 403: no such RPC method or not allowed; 404: no such database; 400/422: a
            # malformed call (422 when a model call lacks its context).
            raise TrytonRequestError(_http_message(self.endpoint, method, response), status)
        try:
            payload = json.loads(response.text, object_hook=_decode, parse_float=Decimal)
        except ValueError as exc:
            raise TrytonTransportError(
                f"{self.endpoint}: {method} answered HTTP 200 with a body that is not JSON: "
                f"{_truncate(response.text, 200)!r}",
                status=status,
            ) from exc
        if "error" in payload and payload["error"] is not None:
            raise _error(method, payload["error"])
        return payload.get("result")


def _http_message(endpoint: str, method: str, response: requests.Response) -> str:
    message = f"{endpoint}: {method} answered HTTP {response.status_code} {response.reason}"
    if "html" not in response.headers.get("Content-Type", "") and response.text:
        message += f": {_truncate(response.text, 500)}"
    return message


class _Unauthorized(Exception):
    """HTTP 401 on a call (not a login): the session expired or is not fresh enough."""


def _error(method: str, error: Any) -> TrytonError:
    if (
        isinstance(error, list)
        and len(error) == 2
        and error[0] in TRYTON_EXCEPTIONS
        and isinstance(error[1], list | str)
    ):
        kind, args = error
        domain = None
        if isinstance(args, str):
            text = args
        elif kind == "UserWarning":
            # (name, message, description): the name is a key to acknowledge the warning.
            text = " - ".join(str(a) for a in args[1:3] if a)
        else:
            # UserError: (message, description, domain); the domain is the large part.
            text = " - ".join(str(a) for a in args[:2] if a)
            if kind == "UserError" and len(args) > 2:
                domain, args = args[2], args[:2]
        return TrytonUserError(
            _truncate(f"{method}: {text}"), details=[kind, args], kind=kind, domain=domain
        )
    if isinstance(error, list) and error and isinstance(error[0], str):
        return TrytonServerError(_truncate(f"{method}: {error[0]}"), details=error)
    return TrytonServerError(_truncate(f"{method}: {error!r}"), details=error)
