"""ERP publishing benchmark: moves per second into Tryton, beside the ceiling.

    python -m benchmarks.erp_publish [--moves 1000] [--batch 100] [--work .bench/erp]

Starts a throw-away PostgreSQL and trytond (as the tests do), then measures on fresh
copies of the same provisioned database, in one run:

- ``ceiling``: bare JSON-RPC, no bookkeeping: ``account.move.create`` of a batch of
  balanced 4-line moves, then ``post``, batch after batch, one connection;
- ``meterclose``: the production publisher (publish ledger in a SQLite control database,
  customer sync, lookup before create, create + post, confirm) over the same number of
  4-line documents, at concurrency 1 and 2.

Both send the same shape of move (two receivable lines with a customer, two revenue
lines) to the same company, period and journal.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

ENTITY = "US01"
PERIOD = "2026-09"


def journal_lines(moves: int, customers: int) -> pl.DataFrame:
    """``moves`` journals of 4 lines each, in journal_lines' shape (vectorised)."""
    n = moves * 4
    index = pl.int_range(0, n, eager=True)
    journal = index // 4
    position = index % 4
    amount = (pl.lit(Decimal("100.00")) + (journal % 97).cast(pl.Decimal(38, 12))).cast(
        pl.Decimal(38, 12)
    )
    zero = pl.lit(Decimal(0)).cast(pl.Decimal(38, 12))
    first = date(2026, 9, 1)
    frame = pl.DataFrame({"journal": journal, "position": position})
    debit = pl.when(pl.col("position") < 2).then(amount).otherwise(zero)
    credit = pl.when(pl.col("position") >= 2).then(amount).otherwise(zero)
    return frame.select(
        accounting_date=pl.lit(first) + pl.duration(days=pl.col("journal") % 28),
        period=pl.lit(PERIOD),
        entity_id=pl.lit(ENTITY),
        erp_subsidiary=pl.lit("1"),
        journal_id=pl.format("JE-BENCH-{}", pl.col("journal")),
        category=pl.lit("billing"),
        line_no=pl.col("position") + 1,
        account=pl.when(pl.col("position") < 2).then(pl.lit("1100")).otherwise(pl.lit("4000")),
        account_role=pl.when(pl.col("position") < 2)
        .then(pl.lit("receivable"))
        .otherwise(pl.lit("revenue")),
        debit=debit,
        credit=credit,
        currency=pl.lit("USD"),
        functional_currency=pl.lit("USD"),
        fx_rate=pl.lit(Decimal(1)).cast(pl.Decimal(38, 12)),
        fx_rate_date=pl.lit(first),
        functional_debit=debit,
        functional_credit=credit,
        product_id=pl.lit(None, pl.String),
        product_family=pl.lit(None, pl.String),
        business_unit=pl.lit(None, pl.String),
        department=pl.lit(None, pl.String),
        customer_id=pl.format(
            "CUST-{}", (pl.col("journal") % customers).cast(pl.String).str.zfill(4)
        ),
        contract_id=pl.lit(None, pl.String),
        invoice_id=pl.format("INV-BENCH-{}-{}", pl.col("journal"), pl.col("position") % 2),
        line_id=pl.lit(None, pl.String),
        service_period=pl.lit(PERIOD),
        memo=pl.format("benchmark journal {} line {}", pl.col("journal"), pl.col("position")),
        source_ref=pl.format("BENCH-{}", pl.col("journal")),
        correlation_id=pl.format("BENCH-{}", pl.col("journal")),
    )


def ceiling(server: Any, database: str, lines: pl.DataFrame, batch: int) -> dict[str, Any]:
    from resources.erp.tryton import TrytonAdapter

    adapter = TrytonAdapter(server.url, database, server.login, server.password, rate_per_second=0)
    from rating.erp import document_lines, documents
    from resources.erp.publisher import to_documents

    docs = to_documents(documents(document_lines(lines, adapter.max_lines, True)))
    company = adapter.company(ENTITY)
    # Parties must exist for receivable lines in both runs; not timed.
    from resources.erp.adapter import Customer

    adapter.sync_customers(
        [Customer(c, c, ENTITY, "USD") for c in sorted({c for d in docs for c in d.customers})]
    )
    adapter._resolve_parties(docs)
    moves = [adapter._move(doc, company) for doc in docs]  # the same values, prepared
    context = {"company": company["id"], "companies": [company["id"]]}
    client = adapter.client
    started = time.perf_counter()
    for start in range(0, len(moves), batch):
        ids = client.create("account.move", moves[start : start + batch], context=context)
        client.execute("account.move", "post", ids, context=context)
    seconds = time.perf_counter() - started
    adapter.close()
    return {
        "moves": len(moves),
        "seconds": round(seconds, 2),
        "moves_per_s": round(len(moves) / seconds, 1),
    }


def meterclose(
    server: Any, database: str, lines: pl.DataFrame, batch: int, concurrency: int, work: Path
) -> dict[str, Any]:
    from rating.erp import document_lines, documents
    from resources.control_db import ControlDb
    from resources.erp.adapter import Customer
    from resources.erp.publish_ledger import PublishLedger
    from resources.erp.publisher import Publisher
    from resources.erp.tryton import TrytonAdapter

    control = work / f"control-{concurrency}.db"
    control.unlink(missing_ok=True)
    db = ControlDb(f"sqlite:///{control}")
    db.migrate()
    adapter = TrytonAdapter(
        server.url, database, server.login, server.password,
        rate_per_second=0, batch_size=batch, pool_size=concurrency,
    )  # fmt: skip
    started = time.perf_counter()
    docs = documents(document_lines(lines, adapter.max_lines, adapter.single_date))
    customers = [Customer(c, c, ENTITY, "USD") for c in sorted(lines["customer_id"].unique())]
    publisher = Publisher(
        adapter, PublishLedger(db.engine, adapter.target), concurrency=concurrency
    )
    report = publisher.publish(PERIOD, docs, {ENTITY}, customers)
    seconds = time.perf_counter() - started
    adapter.close()
    db.dispose()
    assert report.states.get("confirmed") == docs.height, report.states
    return {
        "moves": docs.height,
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "moves_per_s": round(docs.height / seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--moves", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--work", type=Path, default=Path(".bench/erp"))
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests import tryton

    if not tryton.available():
        raise SystemExit("needs PostgreSQL 15 binaries and trytond (pip install -e '.[tryton]')")
    lines = journal_lines(args.moves, args.customers)
    results: dict[str, Any] = {"moves": args.moves, "batch": args.batch, "lines_per_move": 4}
    with tryton.tryton_server() as server:
        results["ceiling"] = ceiling(
            server, server.fresh_database("bench_ceiling"), lines, args.batch
        )
        for concurrency in (1, 2):
            results[f"meterclose_c{concurrency}"] = meterclose(
                server, server.fresh_database(f"bench_c{concurrency}"), lines, args.batch,
                concurrency, args.work,
            )  # fmt: skip
    top = results["ceiling"]["moves_per_s"]
    print(f"{'run':<16}{'moves':>8}{'seconds':>10}{'moves/s':>10}{'of ceiling':>12}")
    for name in ("ceiling", "meterclose_c1", "meterclose_c2"):
        r = results[name]
        share = r["moves_per_s"] / top
        print(f"{name:<16}{r['moves']:>8}{r['seconds']:>10}{r['moves_per_s']:>10}{share:>11.2f}×")
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nfull figures: {args.work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
