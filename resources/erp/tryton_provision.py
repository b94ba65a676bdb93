"""Provision a Tryton database for meterclose: companies, charts, fiscal years, journal, API user.

    python -m resources.erp.tryton_provision --database-uri postgresql://user@host:5432/ \\
        --database meterclose --data-dir data --api-login meterclose \\
        --api-password-env METERCLOSE_TRYTON_PASSWORD

`provision()` runs trytond inside the calling process (trytond's configuration is global
to a process), so callers that must stay clean, such as a test session, run the command.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import yaml
from psycopg import sql

from rating.accounting_reference import parse_accounts, parse_entities
from rating.currency import MINOR_UNITS

logger = logging.getLogger(__name__)

MODULES = ("account", "company", "party", "currency")
CHART_TEMPLATE = "account.account_template_root_en"
CURRENCIES = {"USD": "U.S. Dollar", "EUR": "Euro", "GBP": "Pound Sterling", "JPY": "Yen"}
FISCAL_YEARS = (2026, 2027)
JOURNAL_CODE = "MC"
JOURNAL_NAME = "Meterclose"

# Moves carry our journal's external id in `description`: account.move has no reference or
# external-id field, `origin` only accepts Tryton models, and `description` is a plain
# searchable Char that becomes read-only once the move is posted.
EXTERNAL_ID_FIELD = "description"
# Unique per company among our journal's moves that are not Tryton-made copies (a cancel or
# a copy keeps the description and sets `origin`). The name avoids the `idx_` prefix and
# `_index` suffix: trytond-admin --indexes drops unknown indexes named like its own.
EXTERNAL_ID_INDEX = "account_move_meterclose_external_id_key"

# Our account roles → the Universal Chart account type they belong to (template xml ids,
# without the chart's language suffix).
ROLE_TYPES = {
    "receivable": "account_type_template_accounts_receivable",
    "unbilled_receivable": "account_type_template_revenue_earned_in_arrears",
    "deferred_revenue": "account_type_template_unearned_revenue",
    "contract_liability": "account_type_template_unearned_revenue",
    "customer_credits": "account_type_template_current_liabilities",
    "fx_gain_loss": "account_type_template_other_expenses",
    "rounding": "account_type_template_other_expenses",
    "breakage": "account_type_template_revenue",
    "revenue": "account_type_template_revenue",
}
ROLE_NAMES = {
    "receivable": "Accounts receivable",
    "unbilled_receivable": "Unbilled receivable",
    "deferred_revenue": "Deferred revenue",
    "contract_liability": "Contract liability",
    "customer_credits": "Credits owed to customers",
    "fx_gain_loss": "FX gain/loss",
    "rounding": "Rounding differences",
    "breakage": "Breakage revenue",
}


class ProvisionError(RuntimeError):
    """The database cannot be provisioned as asked (exists already, bad reference data)."""


@dataclass
class ProvisionResult:
    """What was created, and how long each step took (seconds)."""

    database: str
    companies: dict[str, int] = field(default_factory=dict)  # entity_id → company id
    journal: int = 0
    api_user: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(self.timings.values())


@dataclass(frozen=True)
class Entity:
    entity_id: str
    name: str
    currency: str


def read_reference(data_dir: Path) -> tuple[list[Entity], dict[str, dict[str, str]]]:
    """Entities and, per entity, account code → role (`revenue.<family>` for revenue)."""
    reference = data_dir / "reference"
    entities_path = reference / "entities.csv"
    accounts_path = reference / "accounts.yaml"
    try:
        with entities_path.open(newline="", encoding="utf-8") as handle:
            entity_table = parse_entities(csv.DictReader(handle), str(entities_path))
        document = yaml.safe_load(accounts_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProvisionError(f"{exc.filename}: file not found") from exc
    entities = [
        Entity(row["entity_id"], row["name"] or row["entity_id"], row["functional_currency"])
        for row in entity_table.to_pylist()
    ]
    if not isinstance(document, dict):
        raise ProvisionError(f"{accounts_path}: expected a top-level 'accounts:' mapping")
    account_table = parse_accounts(
        document.get("accounts"), str(accounts_path), [e.entity_id for e in entities]
    )
    accounts: dict[str, dict[str, str]] = {e.entity_id: {} for e in entities}
    for row in account_table.to_pylist():
        role = row["role"] if row["product_family"] is None else f"revenue.{row['product_family']}"
        codes = accounts[row["entity_id"]]
        if row["account"] in codes and codes[row["account"]] != role:
            raise ProvisionError(
                f"{accounts_path}: accounts.{row['entity_id']}: account {row['account']} is "
                f"both {codes[row['account']]} and {role}; Tryton needs one account per code"
            )
        codes[row["account"]] = role
    return entities, accounts


def _server_uri(database_uri: str) -> str:
    """The URI without a database path (trytond adds the database name itself)."""
    parts = urlsplit(database_uri)
    scheme = "postgresql" if parts.scheme.startswith("postgresql") else parts.scheme
    if scheme != "postgresql":
        raise ProvisionError(f"--database-uri {database_uri!r}: expected postgresql://…")
    return urlunsplit((scheme, parts.netloc, "/", "", ""))


def _connect(database_uri: str, database: str = "postgres") -> psycopg.Connection[Any]:
    parts = urlsplit(_server_uri(database_uri))
    return psycopg.connect(urlunsplit((parts.scheme, parts.netloc, f"/{database}", "", "")))


def _create_database(database_uri: str, database: str, replace: bool) -> None:
    with _connect(database_uri) as conn:
        conn.autocommit = True
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if exists.fetchone():
            if not replace:
                raise ProvisionError(
                    f"database {database!r} already exists; drop it, pick another name or "
                    "pass --replace"
                )
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(database)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(database)
            )
        )


@contextmanager
def _trytond_config(database_uri: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="meterclose-trytond-") as tmp:
        path = Path(tmp) / "trytond.conf"
        path.write_text(f"[database]\nuri = {_server_uri(database_uri)}\n", encoding="utf-8")
        yield path


def _activate_modules(config_path: Path, database: str) -> None:
    """trytond-admin -c CONF -d DB -u account company party currency, in this process."""
    import trytond.commandline as commandline
    from trytond import config as trytond_config

    trytond_config.update_etc(str(config_path))
    options = commandline.get_parser_admin().parse_args(
        ["-c", str(config_path), "-d", database, "-u", *MODULES, "--activate-dependencies"]
    )
    options.indexes = True
    # The admin user is only used in-process below; give it a random password nobody keeps.
    options.email = ""
    with tempfile.TemporaryDirectory(prefix="meterclose-trytond-") as tmp:
        passfile = Path(tmp) / "admin"
        passfile.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
        passfile.chmod(0o600)
        previous = os.environ.get("TRYTONPASSFILE")
        os.environ["TRYTONPASSFILE"] = str(passfile)
        try:
            import trytond.admin as admin

            admin.run(options)
        finally:
            if previous is None:
                os.environ.pop("TRYTONPASSFILE", None)
            else:
                os.environ["TRYTONPASSFILE"] = previous


def provision(
    database_uri: str,
    database: str,
    data_dir: Path | str,
    api_login: str,
    api_password: str,
    *,
    replace: bool = False,
) -> ProvisionResult:
    """Create and fill `database` on the PostgreSQL server of `database_uri`."""
    data_dir = Path(data_dir)
    entities, accounts = read_reference(data_dir)
    unknown = sorted({e.currency for e in entities} - set(CURRENCIES))
    if unknown:
        raise ProvisionError(
            f"{data_dir / 'reference' / 'entities.csv'}: functional currencies {unknown} are "
            f"not provisioned; expected one of {sorted(CURRENCIES)}"
        )
    if len(api_password) < 8:
        raise ProvisionError("the API password must have at least 8 characters (Tryton's rule)")
    result = ProvisionResult(database=database)

    def step(name: str, started: float) -> None:
        result.timings[name] = round(time.monotonic() - started, 2)
        logger.info("provision %s: %s in %.1f s", database, name, result.timings[name])

    started = time.monotonic()
    _create_database(database_uri, database, replace)
    step("create database", started)

    with _trytond_config(database_uri) as config_path:
        started = time.monotonic()
        _activate_modules(config_path, database)
        step("activate modules", started)

        from proteus import config as proteus_config

        parts = urlsplit(_server_uri(database_uri))
        config = proteus_config.set_trytond(
            urlunsplit((parts.scheme, parts.netloc, f"/{database}", "", "")),
            config_file=str(config_path),
        )
        started = time.monotonic()
        companies = _companies(config, entities)
        result.companies = {entity_id: company.id for entity_id, company in companies.items()}
        step("currencies and companies", started)

        for entity in entities:
            started = time.monotonic()
            _chart(config, companies[entity.entity_id], accounts[entity.entity_id])
            step(f"chart {entity.entity_id}", started)

        started = time.monotonic()
        for entity in entities:
            _fiscal_years(config, entity, companies[entity.entity_id])
        result.journal = _journal(config)
        _customer_tags(config, entities)
        result.api_user = _api_user(config, api_login, api_password, list(companies.values()))
        step("fiscal years, journal, API user", started)

    started = time.monotonic()
    _external_id_index(database_uri, database, result.journal)
    step("external id index", started)
    return result


def _companies(config: Any, entities: list[Entity]) -> dict[str, Any]:
    from proteus import Model

    Currency = Model.get("currency.currency")
    Party = Model.get("party.party")
    Company = Model.get("company.company")
    User = Model.get("res.user")

    currencies = {}
    for code, name in CURRENCIES.items():
        digits = MINOR_UNITS[code]
        currency = Currency(
            name=name, code=code, symbol=code, digits=digits, rounding=Decimal(1).scaleb(-digits)
        )
        currency.save()
        currencies[code] = currency

    companies = {}
    for entity in entities:
        # Our entity id as the party code: an adapter finds the company by it.
        party = Party(name=entity.name, code=entity.entity_id)
        party.save()
        company = Company(party=party, currency=currencies[entity.currency])
        company.save()
        companies[entity.entity_id] = company

    admin = User(config.user)
    admin.companies.extend(Company(c.id) for c in companies.values())
    admin.company = Company(next(iter(companies.values())).id)
    admin.company_filter = "all"
    admin.save()
    config._context = User.get_preferences(True, {})
    return companies


def _chart(config: Any, company: Any, codes: Mapping[str, str]) -> None:
    """The Universal Chart for the company, plus our accounts by code."""
    from proteus import Model, Wizard

    AccountTemplate = Model.get("account.account.template")
    Account = Model.get("account.account")
    AccountType = Model.get("account.account.type")
    ModelData = Model.get("ir.model.data")

    with config.set_context(company=company.id):
        create_chart = Wizard("account.create_chart")
        create_chart.execute("account")
        create_chart.form.account_template = AccountTemplate(
            ModelData.get_id(*CHART_TEMPLATE.split("."), {})
        )
        create_chart.form.company = company
        create_chart.execute("create_account")

        types = {}
        for account_type in AccountType.find([("company", "=", company.id)]):
            if account_type.template:
                types[account_type.template.id] = account_type
        (root,) = Account.find([("company", "=", company.id), ("parent", "=", None)])
        ours = {}
        for code, role in sorted(codes.items()):
            family = role.split(".", 1)[1] if role.startswith("revenue.") else None
            base_role = "revenue" if family else role
            template_id = ModelData.get_id("account", f"{ROLE_TYPES[base_role]}_en", {})
            account = Account(
                company=company,
                code=code,
                name=f"Revenue – {family}" if family else ROLE_NAMES[base_role],
                type=types[template_id],
                parent=root,
            )
            if base_role == "receivable":
                account.party_required = True
                account.reconcile = True
            account.save()
            ours[role] = account

        (payable,) = Account.find(
            [
                ("company", "=", company.id),
                ("type.payable", "=", True),
                ("party_required", "=", True),
            ],
            limit=1,
        )
        # Parties created later (customers synchronised by the publisher) default to our 1100.
        create_chart.form.account_receivable = ours["receivable"]
        create_chart.form.account_payable = payable
        create_chart.execute("create_properties")


def _fiscal_years(config: Any, entity: Entity, company: Any) -> None:
    """Fiscal years with monthly periods; each year numbers its posted moves itself."""
    from proteus import Model

    FiscalYear = Model.get("account.fiscalyear")
    Sequence = Model.get("ir.sequence.strict")
    SequenceType = Model.get("ir.sequence.type")
    ModelData = Model.get("ir.model.data")

    sequence_type = SequenceType(ModelData.get_id("account", "sequence_type_account_move", {}))
    with config.set_context(company=company.id):
        for year in FISCAL_YEARS:
            sequence = Sequence(
                name=f"{entity.entity_id} {year}",
                sequence_type=sequence_type,
                company=company,
                prefix=f"{entity.entity_id}/{year}/",
                padding=6,
            )
            sequence.save()
            fiscal_year = FiscalYear(
                name=f"{entity.entity_id} {year}",
                start_date=dt.date(year, 1, 1),
                end_date=dt.date(year, 12, 31),
                company=company,
                move_sequence=sequence,
            )
            fiscal_year.save()
            FiscalYear.create_period([fiscal_year.id], config.context)


def _customer_tags(config: Any, entities: list[Entity]) -> None:
    """Party categories that record a customer's entity and currency (``entity:US01``,
    ``currency:USD``): the publisher tags the customers it creates, and compares the tags
    of customers already there, never changing them."""
    from proteus import Model

    Category = Model.get("party.category")
    names = [f"entity:{e.entity_id}" for e in entities] + [f"currency:{c}" for c in CURRENCIES]
    Category.save([Category(name=name) for name in names])


def _journal(config: Any) -> int:
    """One general journal shared by all companies (Tryton journals have no company)."""
    from proteus import Model

    Journal = Model.get("account.journal")
    journal = Journal(name=JOURNAL_NAME, code=JOURNAL_CODE, type="general")
    journal.save()
    return int(journal.id)


def _api_user(config: Any, login: str, password: str, companies: list[Any]) -> int:
    from proteus import Model

    User = Model.get("res.user")
    Group = Model.get("res.group")
    Company = Model.get("company.company")
    ModelData = Model.get("ir.model.data")

    user = User(name="Meterclose API", login=login)
    for module, xml_id in (("account", "group_account"), ("account", "group_account_admin")):
        user.groups.append(Group(ModelData.get_id(module, xml_id, {})))
    user.companies.extend(Company(c.id) for c in companies)
    user.company = Company(companies[0].id)
    # All companies' records visible at once: the publisher works across entities.
    user.company_filter = "all"
    user.password = password
    user.save()
    return int(user.id)


def _external_id_index(database_uri: str, database: str, journal_id: int) -> None:
    # A constant predicate: CREATE INDEX does not take bind parameters.
    statement = sql.SQL(
        "CREATE UNIQUE INDEX {} ON account_move (company, {}) "
        "WHERE journal = {} AND origin IS NULL AND {} IS NOT NULL"
    ).format(
        sql.Identifier(EXTERNAL_ID_INDEX),
        sql.Identifier(EXTERNAL_ID_FIELD),
        sql.Literal(journal_id),
        sql.Identifier(EXTERNAL_ID_FIELD),
    )
    with _connect(database_uri, database) as conn:
        conn.execute(statement)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-uri", required=True, help="postgresql://user@host:port/")
    parser.add_argument("--database", required=True, help="name of the database to create")
    parser.add_argument("--data-dir", default="data", type=Path)
    parser.add_argument("--api-login", default="meterclose")
    parser.add_argument(
        "--api-password-env",
        default="METERCLOSE_TRYTON_PASSWORD",
        help="environment variable holding the API user's password",
    )
    parser.add_argument(
        "--replace", action="store_true", help="drop the database first if it exists"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("trytond").setLevel(logging.WARNING)
    password = os.environ.get(args.api_password_env)
    if not password:
        parser.error(f"set the API user's password in ${args.api_password_env}")
    try:
        result = provision(
            args.database_uri,
            args.database,
            args.data_dir,
            args.api_login,
            password,
            replace=args.replace,
        )
    except ProvisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"provisioned {result.database}: companies {result.companies}, journal "
        f"{JOURNAL_CODE} ({result.journal}), API user {args.api_login!r} ({result.api_user}) "
        f"in {result.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
