"""Publishing a closed month to Tryton, the reference ERP, through real faults.

A throw-away PostgreSQL and trytond (tests/tryton.py), a month closed from the sample data
by the real CLI, and ``meterclose publish`` run as the user runs it — in a subprocess, so
it can be killed mid-batch — behind a fault-injecting proxy (tests/faulty_proxy.py).
Afterwards the ERP is read over JSON-RPC directly, not through the proxy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from rating.erp import ledger_balances
from resources.erp.tryton import TrytonAdapter
from resources.erp.tryton_provision import EXTERNAL_ID_FIELD, JOURNAL_CODE
from resources.erp.tryton_rpc import TrytonClient
from tests import tryton
from tests.faulty_proxy import Fault, FaultyProxy, Plan

pytestmark = pytest.mark.skipif(not tryton.available(), reason="needs PostgreSQL and trytond")

REPO = Path(__file__).resolve().parent.parent
PERIOD = "2026-09"
METERCLOSE_CLI = [sys.executable, "-m", "dagster_project.cli"]


def _run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*METERCLOSE_CLI, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"meterclose {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


@pytest.fixture
def server(tryton_erp: tryton.TrytonServer) -> tryton.TrytonServer:
    return tryton_erp


@pytest.fixture(scope="module")
def closed_month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """September of the sample data, ingested and closed (not locked, not approved)."""
    root = tmp_path_factory.mktemp("closed")
    data = root / "data"
    shutil.copytree(REPO / "data", data, ignore=shutil.ignore_patterns("warehouse", "control.db*"))
    env = {
        **os.environ,
        "METERCLOSE_DATA_DIR": str(data),
        "DAGSTER_HOME": str(root / "dagster"),
        "METERCLOSE_ERP": "none",
    }
    (root / "dagster").mkdir()
    _run(env, "close", "--period", PERIOD, "--by", "preparer")
    return root


@pytest.fixture
def month(closed_month: Path, tmp_path: Path) -> Path:
    """A private copy of the closed month: its own control DB and publish ledger."""
    shutil.copytree(closed_month, tmp_path / "m", symlinks=True)
    return tmp_path / "m"


def _env(
    root: Path, server: tryton.TrytonServer, database: str, url: str | None = None
) -> dict[str, str]:
    return {
        **os.environ,
        "METERCLOSE_DATA_DIR": str(root / "data"),
        "DAGSTER_HOME": str(root / "dagster"),
        "METERCLOSE_ERP": "tryton",
        "METERCLOSE_ERP_URL": url or server.url,
        "METERCLOSE_ERP_DATABASE": database,
        "METERCLOSE_ERP_LOGIN": server.login,
        "METERCLOSE_ERP_PASSWORD": server.password,
        "METERCLOSE_ERP_BATCH_SIZE": "4",
        "METERCLOSE_ERP_RATE_PER_SECOND": "0",
    }


def _client(server: tryton.TrytonServer, database: str) -> TrytonClient:
    return TrytonClient(server.url, database, server.login, server.password)


def _moves(server: tryton.TrytonServer, database: str) -> list[dict[str, Any]]:
    client = _client(server, database)
    journal = client.search_read("account.journal", [("code", "=", JOURNAL_CODE)], ["id"])
    return client.search_read(
        "account.move",
        [("journal", "=", journal[0]["id"])],
        ["id", EXTERNAL_ID_FIELD, "state", "company"],
        context={"companies": _company_ids(client)},
    )


def _company_ids(client: TrytonClient) -> list[int]:
    return [c["id"] for c in client.search_read("company.company", [], ["id"])]


def _ledger(root: Path) -> pl.DataFrame:
    engine = sa.create_engine(f"sqlite:///{root / 'data' / 'control.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT external_id, entity_id, state, attempts, erp_document_id, "
                    "last_error FROM erp_publication ORDER BY external_id"
                )
            ).mappings()
            return pl.DataFrame([dict(r) for r in rows], infer_schema_length=None)
    finally:
        engine.dispose()


def _table(root: Path, table: str) -> pl.DataFrame:
    return pl.read_parquet(root / "data" / "warehouse" / table / f"{PERIOD}.parquet")


def _erp_balances(server: tryton.TrytonServer, database: str, entities: list[str]) -> pl.DataFrame:
    adapter = TrytonAdapter(server.url, database, server.login, server.password)
    try:
        return adapter.balances(PERIOD, entities).sort("entity_id", "account", "currency")
    finally:
        adapter.close()


@pytest.mark.parametrize("seed", [11, 21])
def test_publish_survives_faults_and_a_kill_and_lands_each_journal_once(
    server: tryton.TrytonServer, month: Path, seed: int
) -> None:
    database = server.fresh_database(f"faults_{seed}")
    lines = _table(month, "journal_lines")
    entities = sorted(lines["entity_id"].unique())
    _run(_env(month, server, database), "approve", "--period", PERIOD, "--by", "controller")

    # First run: behind a proxy that throttles, fails, drops connections before and after
    # forwarding, and kills the publisher after its 40th request reached Tryton.
    publisher: dict[str, subprocess.Popen[str]] = {}
    killed = threading.Event()

    def kill(_: int) -> None:
        publisher["process"].kill()
        killed.set()

    plan = Plan(
        at={
            3: Fault.throttle(1),
            6: Fault.error(500),
            9: Fault.drop_before(),
            12: Fault.drop_after(),
            15: [Fault.delay(0.3), Fault.error(503)],
        },
        chances=[
            (0.05, Fault.drop_after()),
            (0.05, Fault.error(502)),
            (0.05, Fault.throttle(1)),
            (0.05, Fault.delay(0.2)),
        ],
        seed=seed,
        hooks={40: kill},
    )
    with FaultyProxy(server.url, plan) as proxy:
        env = _env(month, server, database, url=proxy.url)
        publisher["process"] = subprocess.Popen(
            [*METERCLOSE_CLI, "publish", "--period", PERIOD],
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        output, _ = publisher["process"].communicate(timeout=600)
        assert killed.is_set(), output[-3000:]
        assert publisher["process"].returncode != 0
        first_run = Counter(proxy.injected)
    ledger = _ledger(month)
    assert ledger.height > 0
    assert set(ledger["state"]) - {"pending", "sent", "confirmed"} == set()
    assert (ledger["state"] != "confirmed").any(), "the kill came too late to test a resume"

    # Second run: faults again (a different schedule), no kill; it resumes and finishes.
    plan = Plan(
        chances=[(0.08, Fault.drop_after()), (0.08, Fault.error(500)), (0.04, Fault.throttle(1))],
        seed=seed + 1,
    )
    with FaultyProxy(server.url, plan) as proxy:
        _run(_env(month, server, database, url=proxy.url), "publish", "--period", PERIOD)
        second_run = Counter(proxy.injected)
    injected = first_run + second_run
    for kind in ("throttle", "error", "drop_before", "drop_after", "delay"):
        assert injected[kind] >= 1, (kind, injected)

    documents = _table(month, "erp_publication")
    moves = _moves(server, database)
    per_id = Counter(m[EXTERNAL_ID_FIELD] for m in moves)
    assert set(per_id) == set(documents["external_id"])  # every document, nothing else
    assert max(per_id.values()) == 1  # once each
    assert {m["state"] for m in moves} == {"posted"}
    assert set(documents["state"]) == {"confirmed"}
    ledger = _ledger(month)
    assert set(ledger["state"]) == {"confirmed"}
    assert sorted(ledger["erp_document_id"].cast(pl.Int64)) == sorted(m["id"] for m in moves)

    # The ERP's books equal journal_lines, by entity, account and currency, to the cent.
    ours = ledger_balances(lines).select(
        "entity_id", "account", "currency", "amount", "functional_amount"
    )
    theirs = _erp_balances(server, database, entities)
    assert ours.sort("entity_id", "account", "currency").to_dicts() == theirs.to_dicts()
    controls = _table(month, "erp_reconciliation")
    assert set(controls["status"]) == {"tied"}
    assert _table(month, "erp_exceptions").height == 0

    # A third run with nothing to do sends nothing new and changes nothing.
    before = len(moves)
    _run(_env(month, server, database), "publish", "--period", PERIOD)
    assert len(_moves(server, database)) == before
    _run(_env(month, server, database), "lock", "--period", PERIOD, "--by", "controller")


def test_a_closed_erp_period_rejects_that_entity_only_and_blocks_the_lock(
    server: tryton.TrytonServer, month: Path
) -> None:
    database = server.fresh_database("closed_period")
    client = _client(server, database)
    (uk,) = client.search_read("company.company", [("party.code", "=", "UK01")], ["id"])
    context = {"company": uk["id"], "companies": [uk["id"]]}
    periods = client.search_read(
        "account.period",
        [("company", "=", uk["id"]), ("start_date", "=", date(2026, 9, 1))],
        ["id"],
        context=context,
    )
    assert len(periods) == 1
    client.execute("account.period", "close", [periods[0]["id"]], context=context)

    env = _env(month, server, database)
    _run(env, "approve", "--period", PERIOD, "--by", "controller")
    _run(env, "publish", "--period", PERIOD)

    documents = _table(month, "erp_publication")
    rejected = documents.filter(pl.col("state") == "rejected")
    assert set(rejected["entity_id"]) == {"UK01"}
    assert set(documents.filter(pl.col("entity_id") != "UK01")["state"]) == {"confirmed"}
    assert rejected.height == documents.filter(pl.col("entity_id") == "UK01").height
    queue = _table(month, "erp_exceptions")
    refusals = queue.filter(pl.col("kind") == "erp_rejected")
    assert refusals.height == rejected.height
    assert set(refusals["entity_id"]) == {"UK01"}
    assert all("closed" in reason.lower() for reason in refusals["reason"]), refusals["reason"]
    # The rejected documents are explained, not unexplained, in the ERP reconciliation.
    controls = _table(month, "erp_reconciliation")
    assert "unexplained" not in set(controls["status"])
    assert set(controls.filter(pl.col("status") == "explained")["entity_id"]) == {"UK01"}
    # Nothing landed for UK01; the rest landed once.
    moves = _moves(server, database)
    assert not [m for m in moves if m["company"] == uk["id"]]
    assert len(moves) == documents.height - rejected.height

    # Not retried: a second run leaves the rejections and their attempts alone.
    attempts = _ledger(month).filter(pl.col("state") == "rejected")["attempts"].to_list()
    _run(env, "publish", "--period", PERIOD)
    assert _ledger(month).filter(pl.col("state") == "rejected")["attempts"].to_list() == attempts
    assert len(_moves(server, database)) == len(moves)
    # And the month does not lock while the ERP has not confirmed everything — not even
    # from a shell that has no ERP configured: the ledger decides.
    refused = _run(env, "lock", "--period", PERIOD, "--by", "controller", check=False)
    assert refused.returncode != 0
    assert "not confirmed" in refused.stderr + refused.stdout
    no_erp = {**env, "METERCLOSE_ERP": "none"}
    refused = _run(no_erp, "lock", "--period", PERIOD, "--by", "controller", check=False)
    assert refused.returncode != 0
    assert f"{rejected.height} of {documents.height} ERP document(s) not confirmed" in (
        refused.stderr + refused.stdout
    )

    # The controller reopens the period in the ERP and asks for the rejected ones again.
    client.execute("account.period", "reopen", [periods[0]["id"]], context=context)
    _run(env, "publish", "--period", PERIOD, "--retry-rejected", "--by", "controller")
    documents = _table(month, "erp_publication")
    assert set(documents["state"]) == {"confirmed"}
    ledger = _ledger(month).filter(pl.col("entity_id") == "UK01")
    assert all(e is None for e in ledger["last_error"])
    assert len(_moves(server, database)) == documents.height
    assert _table(month, "erp_exceptions").height == 0
    _run(env, "lock", "--period", PERIOD, "--by", "controller")


def test_unapproved_entities_wait_and_a_conflicting_customer_is_held(
    server: tryton.TrytonServer, month: Path
) -> None:
    database = server.fresh_database("approval")
    lines = _table(month, "journal_lines")
    # A customer the ERP already knows under another entity: never overwritten.
    receivables = lines.filter(
        (pl.col("entity_id") == "EU01") & (pl.col("account_role") == "receivable")
    )
    customer = sorted(receivables["customer_id"].unique())[0]
    client = _client(server, database)
    (tag,) = client.search_read("party.category", [("name", "=", "entity:US01")], ["id"])
    category = tag["id"]
    client.create(
        "party.party",
        [{"code": customer, "name": "Someone else", "categories": [["add", [category]]]}],
    )

    env = _env(month, server, database)
    _run(env, "approve", "--period", PERIOD, "--entity", "EU01", "--by", "controller")
    _run(env, "publish", "--period", PERIOD)

    documents = _table(month, "erp_publication")
    eu = documents.filter(pl.col("entity_id") == "EU01")
    others = documents.filter(pl.col("entity_id") != "EU01")
    assert set(others["state"]) == {"pending"}  # not approved: still in the outbox
    assert others["awaiting_approval"].all()
    held = eu.filter(pl.col("state") != "confirmed")
    assert held.height >= 1
    assert set(held["state"]) == {"pending"}
    assert all(customer in m for m in held["message"])
    queue = _table(month, "erp_exceptions")
    conflicts = queue.filter(pl.col("kind") == "erp_customer_conflict")
    assert conflicts.height == held.height
    assert all("entity US01" in r and "EU01" in r for r in conflicts["reason"])
    party = client.search_read("party.party", [("code", "=", customer)], ["name", "categories"])
    assert party == [{"id": party[0]["id"], "name": "Someone else", "categories": [category]}]
    # Every other EU01 customer now exists in the ERP, tagged with its entity and currency.
    named = set(receivables["customer_id"].unique()) - {customer}
    parties = client.search_read("party.party", [("code", "in", sorted(named))], ["code"])
    assert {p["code"] for p in parties} == named
    moves = _moves(server, database)
    assert len(moves) == eu.height - held.height


def test_a_posting_made_in_the_erp_shows_as_an_unexplained_difference(
    server: tryton.TrytonServer, month: Path
) -> None:
    database = server.fresh_database("read_back")
    env = _env(month, server, database)
    _run(env, "approve", "--period", PERIOD, "--by", "controller")
    _run(env, "publish", "--period", PERIOD)
    assert set(_table(month, "erp_reconciliation")["status"]) == {"tied"}

    # Someone books 12.34 straight into our journal in the ERP.
    client = _client(server, database)
    (us,) = client.search_read("company.company", [("party.code", "=", "US01")], ["id"])
    context = {"company": us["id"], "companies": [us["id"]]}
    accounts = {
        a["code"]: a["id"]
        for a in client.search_read(
            "account.account",
            [("company", "=", us["id"]), ("code", "in", ["4000", "7190"])],
            ["id", "code"],
            context=context,
        )
    }
    (period,) = client.search_read(
        "account.period",
        [("company", "=", us["id"]), ("start_date", "=", date(2026, 9, 1))],
        ["id"],
        context=context,
    )
    journal = client.search_read("account.journal", [("code", "=", JOURNAL_CODE)], ["id"])
    amount = Decimal("12.34")
    (move,) = client.create(
        "account.move",
        [
            {
                "company": us["id"],
                "journal": journal[0]["id"],
                "period": period["id"],
                "date": date(2026, 9, 30),
                EXTERNAL_ID_FIELD: "manual correction",
                "lines": [
                    [
                        "create",
                        [
                            {"account": accounts["7190"], "debit": amount, "credit": Decimal(0)},
                            {"account": accounts["4000"], "debit": Decimal(0), "credit": amount},
                        ],
                    ]
                ],
            }
        ],
        context=context,
    )
    client.execute("account.move", "post", [move], context=context)

    # Publishing again sends nothing, but the read-back no longer ties: a blocking check
    # fails, the difference is in erp_reconciliation and the exception queue, and the
    # month cannot be locked.
    failed = _run(env, "publish", "--period", PERIOD, check=False)
    assert failed.returncode != 0
    assert "erp_reconciliation_has_no_unexplained_variance" in failed.stderr + failed.stdout
    controls = _table(month, "erp_reconciliation").filter(pl.col("status") == "unexplained")
    assert sorted(zip(controls["control"], controls["variance"], strict=True)) == [
        ("erp_account_4000", amount),
        ("erp_account_7190", -amount),
    ]
    assert set(controls["entity_id"]) == {"US01"}
    queue = _table(month, "erp_exceptions").filter(pl.col("kind") == "erp_balance_differs")
    assert queue.height == 2
    assert set(_table(month, "erp_publication")["state"]) == {"confirmed"}
    refused = _run(env, "lock", "--period", PERIOD, "--by", "controller", check=False)
    assert refused.returncode != 0
    assert "differ" in refused.stderr + refused.stdout


def test_drafts_left_by_a_crash_are_posted_once_or_discarded_if_refused(
    server: tryton.TrytonServer, month: Path
) -> None:
    """A publisher that died between create and post leaves drafts under our external
    ids: the next run posts them instead of creating again; one the ERP will not post is
    deleted and rejected with the ERP's message."""
    from rating.erp import document_lines, documents
    from resources.erp.adapter import Customer
    from resources.erp.publisher import to_documents

    database = server.fresh_database("drafts")
    env = _env(month, server, database)
    _run(env, "approve", "--period", PERIOD, "--by", "controller")
    adapter = TrytonAdapter(server.url, database, server.login, server.password)
    docs = to_documents(
        documents(document_lines(_table(month, "journal_lines"), adapter.max_lines, True))
    )
    us = [d for d in docs if d.entity_id == "US01"]
    company = adapter.company("US01")
    context = {"company": company["id"], "companies": [company["id"]]}
    customers = pl.read_csv(month / "data" / "reference" / "customers.csv", infer_schema=False)
    named = {c for d in us[:2] for c in d.customers}
    adapter.sync_customers(
        [
            Customer(r["customer_id"], r["name"], r["entity_id"], r["currency"])
            for r in customers.filter(pl.col("customer_id").is_in(sorted(named))).to_dicts()
        ]
    )
    adapter._resolve_parties(us[:2])
    good = adapter._move(us[0], company)
    bad = adapter._move(us[1], company)
    # The second draft no longer balances (as if edited in the ERP before it was posted).
    bad["lines"][0][1][0]["debit"] += Decimal("0.01")
    good_id, bad_id = adapter.client.create("account.move", [good, bad], context=context)
    adapter.close()

    _run(env, "publish", "--period", PERIOD)
    documents_ = _table(month, "erp_publication")
    state = dict(zip(documents_["external_id"], documents_["state"], strict=True))
    assert state[us[0].external_id] == "confirmed"
    assert state[us[1].external_id] == "rejected"
    moves = {m[EXTERNAL_ID_FIELD]: m for m in _moves(server, database)}
    assert moves[us[0].external_id]["id"] == good_id  # the draft, posted, not a new move
    assert moves[us[0].external_id]["state"] == "posted"
    assert us[1].external_id not in moves  # the refused draft is gone
    assert bad_id not in {m["id"] for m in moves.values()}
    ledger = _ledger(month)
    row = ledger.filter(pl.col("external_id") == us[1].external_id).row(0, named=True)
    assert "balance" in row["last_error"]
    reasons = _table(month, "erp_exceptions").filter(pl.col("kind") == "erp_rejected")["reason"]
    assert any(us[1].external_id in r and "balance" in r for r in reasons)
    assert len(moves) == documents_.height - 1


def test_changed_journals_after_confirmation_block_the_lock_and_an_unreconciled_month_is_not_sent(
    server: tryton.TrytonServer, month: Path
) -> None:
    database = server.fresh_database("changed")
    env = _env(month, server, database)
    warehouse = month / "data" / "warehouse"

    # An unexplained variance in the month's reconciliation: publish_job sends nothing.
    controls_path = warehouse / "reconciliation" / f"{PERIOD}.parquet"
    controls = pl.read_parquet(controls_path)
    pl.concat(
        [controls, controls.head(1).with_columns(status=pl.lit("unexplained"))]
    ).write_parquet(controls_path)
    _run(env, "approve", "--period", PERIOD, "--by", "controller")
    refused = _run(env, "publish", "--period", PERIOD, check=False)
    assert refused.returncode != 0
    assert "is not published: 1 control(s) with an unexplained variance" in (
        refused.stderr + refused.stdout
    )
    assert _moves(server, database) == []
    controls.write_parquet(controls_path)

    _run(env, "publish", "--period", PERIOD)
    published = _table(month, "erp_publication")
    assert set(published["state"]) == {"confirmed"}
    assert not published["content_changed"].any()

    # The month is closed again before it is locked, and one confirmed document's lines
    # change (here: a memo): approved again, it is not sent again, and the lock refuses.
    lines_path = warehouse / "journal_lines" / f"{PERIOD}.parquet"
    lines = pl.read_parquet(lines_path)
    target = (
        lines.filter(pl.col("entity_id") == "US01").sort("journal_id", "line_no").row(0, named=True)
    )
    lines.with_columns(
        memo=pl.when(
            (pl.col("journal_id") == target["journal_id"])
            & (pl.col("line_no") == target["line_no"])
        )
        .then(pl.lit("a memo rewritten after the ERP confirmed the journal"))
        .otherwise(pl.col("memo"))
    ).write_parquet(lines_path)
    _run(env, "approve", "--period", PERIOD, "--by", "controller")
    moves = len(_moves(server, database))
    _run(env, "publish", "--period", PERIOD)
    assert len(_moves(server, database)) == moves
    published = _table(month, "erp_publication")
    changed = published.filter(pl.col("content_changed"))
    assert changed.height == 1
    assert changed["journal_id"].to_list() == [target["journal_id"]]
    queue = _table(month, "erp_exceptions").filter(pl.col("kind") == "erp_document_changed")
    assert queue["reason"].str.starts_with(changed["external_id"][0]).to_list() == [True]
    refused = _run(env, "lock", "--period", PERIOD, "--by", "controller", check=False)
    assert refused.returncode != 0
    assert "1 ERP document(s) changed after the ERP confirmed them" in (
        refused.stderr + refused.stdout
    )
