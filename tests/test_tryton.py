"""The reference ERP over JSON-RPC: provisioning, moves, and how Tryton rejects them."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import http.server
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
import yaml

from resources.erp.tryton_provision import EXTERNAL_ID_FIELD, JOURNAL_CODE
from resources.erp.tryton_rpc import (
    TrytonAuthError,
    TrytonClient,
    TrytonRequestError,
    TrytonServerError,
    TrytonTransportError,
    TrytonUserError,
)
from tests import tryton
from tests.postgres import _free_port

pytestmark = pytest.mark.skipif(not tryton.available(), reason="needs PostgreSQL 15 and trytond")

REFERENCE = tryton.REPO / "data" / "reference"


@pytest.fixture(scope="module")
def erp(tryton_erp: tryton.TrytonServer) -> TrytonClient:
    database = tryton_erp.fresh_database("test_tryton")
    client = TrytonClient(tryton_erp.url, database, tryton_erp.login, tryton_erp.password)
    client.login()
    return client


def entities() -> dict[str, str]:
    with (REFERENCE / "entities.csv").open(newline="") as handle:
        return {row["entity_id"]: row["functional_currency"] for row in csv.DictReader(handle)}


def company_id(erp: TrytonClient, entity_id: str) -> int:
    (company,) = erp.search_read("company.company", [("party.code", "=", entity_id)], ["id"])
    return int(company["id"])


def one_id(erp: TrytonClient, model: str, domain: list[Any]) -> int:
    records = erp.search_read(model, domain, ["id"])
    assert len(records) == 1, (model, domain, records)
    return int(records[0]["id"])


def period_id(erp: TrytonClient, company: int, name: str) -> int:
    return one_id(erp, "account.period", [("company", "=", company), ("name", "=", name)])


def account_ids(erp: TrytonClient, company: int) -> dict[str, int]:
    records = erp.search_read("account.account", [("company", "=", company)], ["id", "code"])
    return {r["code"]: r["id"] for r in records if r["code"]}


def move_values(
    erp: TrytonClient,
    entity_id: str,
    external_id: str,
    period: str,
    lines: list[dict[str, Any]],
    date: dt.date,
) -> dict[str, Any]:
    company = company_id(erp, entity_id)
    return {
        "company": company,
        "journal": one_id(erp, "account.journal", [("code", "=", JOURNAL_CODE)]),
        "period": period_id(erp, company, period),
        "date": date,
        EXTERNAL_ID_FIELD: external_id,
        "lines": [["create", lines]],
    }


def sale_lines(erp: TrytonClient, entity_id: str, party: int) -> list[dict[str, Any]]:
    """A EUR receivable carrying its USD invoice amount, against platform revenue."""
    accounts = account_ids(erp, company_id(erp, entity_id))
    usd = one_id(erp, "currency.currency", [("code", "=", "USD")])
    return [
        {
            "account": accounts["1100"],
            "party": party,
            "debit": Decimal("1000.05"),
            "credit": Decimal(0),
            "second_currency": usd,
            "amount_second_currency": Decimal("1173.41"),
        },
        {"account": accounts["4000"], "debit": Decimal(0), "credit": Decimal("900.00")},
        {"account": accounts["2300"], "debit": Decimal(0), "credit": Decimal("100.05")},
    ]


@pytest.fixture(scope="module")
def customer(erp: TrytonClient) -> int:
    (party,) = erp.create("party.party", [{"name": "Globex GmbH", "code": "CUST-0002"}])
    return party


def test_api_user_logs_in_with_every_company(erp: TrytonClient) -> None:
    (user,) = erp.search_read("res.user", [("login", "=", erp.login_name)], ["id", "companies"])
    assert user["id"] == erp.user_id
    assert len(erp.context["companies"]) == len(entities())
    assert sorted(erp.context["companies"]) == sorted(user["companies"])


def test_companies_found_by_entity_code_with_functional_currency(erp: TrytonClient) -> None:
    records = erp.search_read(
        "company.company", [], ["party.code", "currency.code", "currency.digits"]
    )
    found = {r["party."]["code"]: r["currency."] for r in records}
    assert {code: c["code"] for code, c in found.items()} == entities()
    assert found["JP01"]["digits"] == 0
    assert found["EU01"]["digits"] == 2


def test_every_mapped_account_found_by_company_and_code(erp: TrytonClient) -> None:
    document = yaml.safe_load((REFERENCE / "accounts.yaml").read_text())["accounts"]
    for entity_id, roles in document.items():
        company = company_id(erp, entity_id)
        codes = {role: code for role, code in roles.items() if role != "revenue"}
        codes |= {f"revenue.{family}": code for family, code in roles["revenue"].items()}
        records = erp.search_read(
            "account.account",
            [("company", "=", company), ("code", "in", sorted(set(codes.values())))],
            ["code", "party_required", "type.receivable", "type.revenue", "closed"],
        )
        by_code = {r["code"]: r for r in records}
        assert len(records) == len(by_code) == len(set(codes.values())), entity_id
        receivable = by_code[codes["receivable"]]
        assert receivable["type."]["receivable"] and receivable["party_required"]
        for role, code in codes.items():
            if role.startswith("revenue.") or role == "breakage":
                assert by_code[code]["type."]["revenue"], (entity_id, role)
            assert not by_code[code]["closed"]


def test_each_company_has_an_open_2026_09_period(erp: TrytonClient) -> None:
    for entity_id in entities():
        company = company_id(erp, entity_id)
        (period,) = erp.search_read(
            "account.period",
            [("company", "=", company), ("name", "=", "2026-09")],
            ["start_date", "end_date", "state", "fiscalyear.end_date"],
        )
        assert (period["start_date"], period["end_date"]) == (
            dt.date(2026, 9, 1),
            dt.date(2026, 9, 30),
        )
        assert period["state"] == "open"
        for year in (2026, 2027):
            assert period_id(erp, company, f"{year}-12")


def test_move_in_two_currencies_posts_and_reads_back_exactly(
    erp: TrytonClient, customer: int
) -> None:
    values = move_values(
        erp,
        "EU01",
        "MC-EU01-2026-09-000001",
        "2026-09",
        sale_lines(erp, "EU01", customer),
        dt.date(2026, 9, 30),
    )
    (move,) = erp.create("account.move", [values])
    erp.execute("account.move", "post", [move])

    (found,) = erp.search_read(
        "account.move",
        [("company", "=", values["company"]), (EXTERNAL_ID_FIELD, "=", "MC-EU01-2026-09-000001")],
        ["state", "number", "journal.code", "period.name", "date"],
    )
    assert found["id"] == move
    assert found["state"] == "posted"
    assert found["number"].startswith("EU01/2026/")
    assert (found["journal."]["code"], found["period."]["name"]) == (JOURNAL_CODE, "2026-09")
    assert found["date"] == dt.date(2026, 9, 30)

    lines = erp.search_read(
        "account.move.line",
        [("move", "=", move)],
        [
            "account.code",
            "debit",
            "credit",
            "amount_second_currency",
            "second_currency.code",
            "party.code",
            f"move.{EXTERNAL_ID_FIELD}",
        ],
        order=[("id", "ASC")],
    )
    assert [
        (
            line["account."]["code"],
            line["debit"],
            line["credit"],
            line["amount_second_currency"],
            (line["second_currency."] or {}).get("code"),
            (line["party."] or {}).get("code"),
        )
        for line in lines
    ] == [
        ("1100", Decimal("1000.05"), Decimal("0"), Decimal("1173.41"), "USD", "CUST-0002"),
        ("4000", Decimal("0"), Decimal("900.00"), None, None, None),
        ("2300", Decimal("0"), Decimal("100.05"), None, None, None),
    ]
    assert {line["move."][EXTERNAL_ID_FIELD] for line in lines} == {"MC-EU01-2026-09-000001"}
    assert all(isinstance(line["debit"], Decimal) for line in lines)


def test_same_external_id_twice_in_a_company_is_refused(erp: TrytonClient, customer: int) -> None:
    external_id = "MC-EU01-2026-09-000002"
    lines = sale_lines(erp, "EU01", customer)
    values = move_values(erp, "EU01", external_id, "2026-09", lines, dt.date(2026, 9, 15))
    erp.create("account.move", [values])
    # PostgreSQL's unique index answers, not Tryton: an HTTP 200 body with a plain error.
    with pytest.raises(TrytonServerError) as refused:
        erp.create("account.move", [values])
    assert refused.value.unique_violation
    assert "account_move_meterclose_external_id_key" in refused.value.message
    moves = erp.search(
        "account.move",
        [("company", "=", values["company"]), (EXTERNAL_ID_FIELD, "=", external_id)],
    )
    assert len(moves) == 1

    # Unique per company: the same external id in another company is another journal.
    us_accounts = account_ids(erp, company_id(erp, "US01"))
    us_lines = [
        {"account": us_accounts["4000"], "debit": Decimal(0), "credit": Decimal("5.00")},
        {
            "account": us_accounts["1100"],
            "party": customer,
            "debit": Decimal("5.00"),
            "credit": Decimal(0),
        },
    ]
    erp.create(
        "account.move",
        [move_values(erp, "US01", external_id, "2026-09", us_lines, dt.date(2026, 9, 15))],
    )


def test_move_into_a_closed_period_is_a_user_error_naming_it(
    erp: TrytonClient, customer: int
) -> None:
    company = company_id(erp, "EU01")
    period = period_id(erp, company, "2026-03")
    erp.execute("account.period", "close", [period])
    assert erp.read("account.period", [period], ["state"])[0]["state"] == "closed"

    values = move_values(
        erp,
        "EU01",
        "MC-EU01-2026-03-000001",
        "2026-03",
        sale_lines(erp, "EU01", customer),
        dt.date(2026, 3, 31),
    )
    with pytest.raises(TrytonUserError) as rejected:
        erp.create("account.move", [values])
    assert rejected.value.kind == "UserError"
    assert "closed period" in rejected.value.message
    assert '"2026-03"' in rejected.value.message
    assert not erp.search("account.move", [(EXTERNAL_ID_FIELD, "=", "MC-EU01-2026-03-000001")])


def test_unbalanced_move_is_refused_on_post(erp: TrytonClient, customer: int) -> None:
    lines = sale_lines(erp, "EU01", customer)[:2]  # 1000.05 debit against 900.00 credit
    values = move_values(erp, "EU01", "MC-EU01-UNBALANCED", "2026-09", lines, dt.date(2026, 9, 30))
    (move,) = erp.create("account.move", [values])
    with pytest.raises(TrytonUserError, match="balance") as rejected:
        erp.execute("account.move", "post", [move])
    assert rejected.value.details[0] == "UserError"
    assert erp.read("account.move", [move], ["state"])[0]["state"] == "draft"


def test_domain_errors_keep_the_message_short(erp: TrytonClient, customer: int) -> None:
    values = move_values(
        erp,
        "EU01",
        "MC-EU01-WRONG-PERIOD",
        "2026-09",
        sale_lines(erp, "EU01", customer),
        dt.date(2026, 9, 30),
    )
    values["period"] = period_id(erp, company_id(erp, "US01"), "2026-09")
    with pytest.raises(TrytonUserError, match="not valid according to its domain") as rejected:
        erp.create("account.move", [values])
    assert len(rejected.value.message) < 2100
    assert rejected.value.domain  # the large field definitions, kept apart


def test_expired_session_logs_in_again(tryton_erp: tryton.TrytonServer, erp: TrytonClient) -> None:
    client = TrytonClient(tryton_erp.url, erp.database, tryton_erp.login, tryton_erp.password)
    first = client.login()
    token = base64.b64encode(f"{tryton_erp.login}:{first}:expired".encode()).decode()
    client._authorization = f"Session {token}"
    assert len(client.search("company.company", [])) == len(entities())
    assert client._authorization != f"Session {token}"


def test_wrong_password_is_an_auth_error(
    tryton_erp: tryton.TrytonServer, erp: TrytonClient
) -> None:
    with pytest.raises(TrytonAuthError):
        TrytonClient(tryton_erp.url, erp.database, tryton_erp.login, "not-the-password").login()


def test_unknown_method_is_a_request_error(erp: TrytonClient) -> None:
    # (A login to a database that does not exist is a 404 too, but only after trytond's
    # connection pool gives up on it, 30 s later.)
    with pytest.raises(TrytonRequestError) as forbidden:
        erp.call("model.account.move.no_such_method", [])
    assert forbidden.value.status == 403


def test_fresh_databases_are_pristine_and_earlier_ones_keep_working(
    tryton_erp: tryton.TrytonServer, erp: TrytonClient, customer: int
) -> None:
    other = tryton_erp.fresh_database("test_tryton_other")
    try:
        client = TrytonClient(tryton_erp.url, other, tryton_erp.login, tryton_erp.password)
        assert client.search("account.move", [("journal.code", "=", JOURNAL_CODE)]) == []
        # The clone may have restarted trytond; the first database still answers.
        assert erp.search("party.party", [("code", "=", "CUST-0002")]) == [customer]
    finally:
        tryton_erp.drop_database(other)


class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the status, headers and body queued on the server."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, headers, body = self.server.answers.pop(0)  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[tuple[str, list[tuple[int, dict[str, str], bytes]]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    server.answers = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.answers  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


LOGIN_OK = (200, {"Content-Type": "application/json"}, b'{"id": 1, "result": [2, "tok", null]}')


@pytest.mark.parametrize(
    ("status", "headers", "body", "retry_after"),
    [
        (429, {"Retry-After": "7"}, b"slow down", 7.0),
        (503, {}, b"could not obtain lock", None),
        (500, {}, b"boom", None),
        (200, {"Content-Type": "application/json"}, b'{"id": 2, "resu', None),
    ],
)
def test_throttling_server_faults_and_cut_bodies_are_transport_errors(
    canned: tuple[str, list[Any]],
    status: int,
    headers: dict[str, str],
    body: bytes,
    retry_after: float | None,
) -> None:
    url, answers = canned
    answers.extend([LOGIN_OK, (status, headers, body)])
    client = TrytonClient(url, "db", "meterclose", "secret")
    with pytest.raises(TrytonTransportError) as fault:
        client.call("model.res.user.get_preferences", True)
    assert fault.value.retry_after == retry_after
    assert "secret" not in str(fault.value) and "tok" not in str(fault.value)


def test_refused_connection_is_a_transport_error() -> None:
    client = TrytonClient(f"http://127.0.0.1:{_free_port()}", "db", "meterclose", "secret")
    with pytest.raises(TrytonTransportError) as fault:
        client.login()
    assert isinstance(fault.value.__cause__, requests.ConnectionError)


def test_session_refused_after_a_fresh_login_is_an_auth_error(
    canned: tuple[str, list[Any]],
) -> None:
    url, answers = canned
    answers.extend([LOGIN_OK, (401, {}, b""), LOGIN_OK, (401, {}, b"")])
    client = TrytonClient(url, "db", "meterclose", "secret")
    with pytest.raises(TrytonAuthError):
        client.call("model.res.user.get_preferences", True)
    assert answers == []
