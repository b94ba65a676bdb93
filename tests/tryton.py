"""A throw-away Tryton for tests: PostgreSQL on loopback, one provisioned template, trytond.

    with tryton_server() as tryton:
        database = tryton.fresh_database("test_publish")   # a pristine clone, ~1 s
        client = TrytonClient(tryton.url, database, tryton.login, tryton.password)

The template is provisioned once per session (about 40 s), or restored from a pg_dump
cached under $METERCLOSE_TRYTON_CACHE (default ~/.cache/meterclose/tryton; "off" disables),
keyed by a hash of the provisioning code, the reference data and the installed trytond.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests
from psycopg import sql

from resources.erp import tryton_provision
from tests.postgres import PG_BIN, _free_port, cluster

REPO = Path(__file__).resolve().parents[1]
TRYTOND = Path(sys.executable).with_name("trytond")
API_LOGIN = "meterclose"
TEMPLATE = "meterclose_template"
PASSWORD_ENV = "METERCLOSE_TRYTON_PASSWORD"
CACHE_ENV = "METERCLOSE_TRYTON_CACHE"
TRYTON_PACKAGES = (
    "trytond",
    "trytond-account",
    "trytond-company",
    "trytond-currency",
    "trytond-party",
    "proteus",
)


def available() -> bool:
    return (PG_BIN / "initdb").exists() and TRYTOND.exists()


@dataclass
class TrytonServer:
    """A running trytond on loopback and the PostgreSQL cluster behind it."""

    url: str
    template: str
    login: str
    password: str
    postgres_url: str  # SQLAlchemy URL of the cluster's `postgres` database
    database_uri: str  # the same server as trytond's [database] uri (no database path)
    config_file: Path
    log_file: Path
    timings: dict[str, float] = field(default_factory=dict)
    _process: subprocess.Popen[bytes] | None = None

    def fresh_database(self, name: str) -> str:
        """Clone the template into a new database `name` that trytond serves; return name."""
        started = time.monotonic()
        with _admin_connection(self.database_uri) as conn:
            # CREATE DATABASE … TEMPLATE needs the template to have no other sessions.
            for attempt in range(20):
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.template,),
                )
                try:
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                            sql.Identifier(name), sql.Identifier(self.template)
                        )
                    )
                    break
                except psycopg.errors.ObjectInUse:
                    if attempt == 19:
                        raise
                    time.sleep(0.1)
        # trytond caches its database list for [session] timeout seconds and answers 404
        # for a database created since; a restart is the one way to refresh it.
        if name in self._listed_databases():
            self._warm(name)
        else:
            self.restart()
        self.timings[f"fresh {name}"] = round(time.monotonic() - started, 2)
        return name

    def drop_database(self, name: str) -> None:
        with _admin_connection(self.database_uri) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    def start(self) -> None:
        started = time.monotonic()
        log = self.log_file.open("ab")
        self._process = subprocess.Popen(
            [str(TRYTOND), "-c", str(self.config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.config_file.parent,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"trytond exited with {self._process.returncode}; see {self.log_file}:\n"
                    + self.log_file.read_text(errors="replace")[-3000:]
                )
            try:
                self._rpc("common.server.version")
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        for database in self._listed_databases():
            self._warm(database)
        self.timings["server start"] = round(time.monotonic() - started, 2)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _warm(self, database: str) -> None:
        """Load the database's pool before anyone logs in.

        A login that is the first request for a database finds an empty pool in trytond
        8.2 (the cache sync on transaction start registers it uninitialised) and fails
        with KeyError 'res.user'; the same goes for a session check after a restart.
        GET /<db>/r/… is trytond's route that initialises a pool (and then answers 404).
        """
        requests.get(f"{self.url}/{database}/r/meterclose-warm-up", timeout=60)

    def _listed_databases(self) -> list[str]:
        return list(self._rpc("common.db.list"))

    def _rpc(self, method: str, *params: Any) -> Any:
        response = requests.post(
            f"{self.url}/rpc/",
            json={"id": 0, "method": method, "params": list(params)},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["result"]


def _admin_connection(database_uri: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(database_uri.rstrip("/") + "/postgres", autocommit=True)
    return conn


def _cache_key(data_dir: Path, pg_version: str) -> str:
    digest = hashlib.sha256()
    sources = [
        Path(tryton_provision.__file__),
        REPO / "rating" / "accounting_reference.py",
        REPO / "rating" / "currency.py",
        data_dir / "reference" / "entities.csv",
        data_dir / "reference" / "accounts.yaml",
    ]
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    versions = {p: importlib.metadata.version(p) for p in TRYTON_PACKAGES}
    digest.update(json.dumps({"packages": versions, "postgres": pg_version}).encode())
    return digest.hexdigest()[:24]


def _cache_dir() -> Path | None:
    value = os.environ.get(CACHE_ENV, str(Path.home() / ".cache" / "meterclose" / "tryton"))
    if value.lower() in {"", "0", "off", "no"}:
        return None
    return Path(value)


def _set_api_password(database_uri: str, database: str, password: str) -> None:
    """A restored template keeps the password hash of the session that dumped it: replace it
    with this session's, hashed the way trytond does (pwdlib, argon2)."""
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    password_hash = PasswordHash([Argon2Hasher()]).hash(password)
    with psycopg.connect(database_uri.rstrip("/") + f"/{database}", autocommit=True) as conn:
        updated = conn.execute(
            "UPDATE res_user SET password_hash = %s WHERE login = %s", (password_hash, API_LOGIN)
        )
        if updated.rowcount != 1:
            raise RuntimeError(f"{database}: no user {API_LOGIN!r} to set the password of")


def _provision_template(
    database_uri: str, data_dir: Path, password: str, timings: dict[str, float]
) -> None:
    pg_dump, pg_restore = PG_BIN / "pg_dump", PG_BIN / "pg_restore"
    with _admin_connection(database_uri) as conn:
        pg_version = str(conn.info.server_version)
    cache_dir = _cache_dir()
    dump = cache_dir / f"template-{_cache_key(data_dir, pg_version)}.dump" if cache_dir else None
    host_args = _pg_args(database_uri)
    started = time.monotonic()
    if dump is not None and dump.exists():
        with _admin_connection(database_uri) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
        restored = subprocess.run(
            [
                str(pg_restore),
                *host_args,
                "-d",
                TEMPLATE,
                "--no-owner",
                "--exit-on-error",
                str(dump),
            ],
            capture_output=True,
        )
        if restored.returncode == 0:
            _set_api_password(database_uri, TEMPLATE, password)
            timings["template restored from cache"] = round(time.monotonic() - started, 2)
            return
        # A damaged cache costs one provisioning, never a wrong template.
        dump.unlink(missing_ok=True)
        with _admin_connection(database_uri) as conn:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(TEMPLATE)))
    provisioned = subprocess.run(
        [
            sys.executable,
            "-m",
            "resources.erp.tryton_provision",
            "--database-uri",
            database_uri,
            "--database",
            TEMPLATE,
            "--data-dir",
            str(data_dir),
            "--api-login",
            API_LOGIN,
            "--api-password-env",
            PASSWORD_ENV,
        ],
        cwd=REPO,
        env={**os.environ, PASSWORD_ENV: password},
        capture_output=True,
        text=True,
    )
    if provisioned.returncode != 0:
        raise RuntimeError(
            f"provisioning the Tryton template failed ({provisioned.returncode}):\n"
            + (provisioned.stdout + provisioned.stderr)[-4000:]
        )
    timings["template provisioned"] = round(time.monotonic() - started, 2)
    if dump is not None:
        started = time.monotonic()
        dump.parent.mkdir(parents=True, exist_ok=True)
        partial = dump.with_suffix(f".{os.getpid()}.partial")
        subprocess.run(
            [str(pg_dump), *host_args, "-Fc", "-f", str(partial), TEMPLATE],
            check=True,
            capture_output=True,
        )
        partial.replace(dump)
        for stale in dump.parent.glob("template-*.dump"):
            if stale != dump:
                stale.unlink(missing_ok=True)
        timings["template dumped to cache"] = round(time.monotonic() - started, 2)


def _pg_args(database_uri: str) -> list[str]:
    from urllib.parse import urlsplit

    parts = urlsplit(database_uri)
    return [
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 5432),
        "-U",
        parts.username or "postgres",
    ]


@contextmanager
def tryton_server(data_dir: Path | None = None) -> Iterator[TrytonServer]:
    """Start PostgreSQL and trytond with a provisioned template; stop both at the end."""
    data_dir = data_dir or REPO / "data"
    password = secrets.token_urlsafe(18)
    timings: dict[str, float] = {}
    started = time.monotonic()
    with (
        cluster() as postgres_url,
        tempfile.TemporaryDirectory(prefix="meterclose-trytond-") as tmp,
    ):
        timings["postgres"] = round(time.monotonic() - started, 2)
        # trytond (running as whoever runs the tests, root included) reaches the server as
        # the `postgres` role over TCP; trust authentication on loopback only.
        database_uri = (
            postgres_url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/"
        )
        _provision_template(database_uri, data_dir, password, timings)
        with _admin_connection(database_uri) as conn:
            # Marked as a template: hidden from trytond's database list, so the server never
            # holds a connection to it and clones never wait.
            conn.execute(
                sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(sql.Identifier(TEMPLATE))
            )
        port = _free_port()
        config_file = Path(tmp) / "trytond.conf"
        config_file.write_text(
            "\n".join(
                [
                    "[database]",
                    f"uri = {database_uri}",
                    "list = True",
                    "[web]",
                    f"listen = 127.0.0.1:{port}",
                    "[email]",
                    # Nothing in these tests sends mail; a closed port makes sure of it.
                    "uri = smtp://127.0.0.1:1",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        server = TrytonServer(
            url=f"http://127.0.0.1:{port}",
            template=TEMPLATE,
            login=API_LOGIN,
            password=password,
            postgres_url=postgres_url,
            database_uri=database_uri,
            config_file=config_file,
            log_file=Path(tmp) / "trytond.log",
            timings=timings,
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    """A throw-away Tryton for trying the publisher by hand: starts PostgreSQL and trytond,
    clones a provisioned database, prints the environment to publish to it, and runs until
    interrupted (everything is removed then)."""
    import signal

    with tryton_server() as server:
        database = server.fresh_database("meterclose")
        print(
            "Tryton is running; in another shell:\n\n"
            "  export METERCLOSE_ERP=tryton\n"
            f"  export METERCLOSE_ERP_URL={server.url}\n"
            f"  export METERCLOSE_ERP_DATABASE={database}\n"
            f"  export METERCLOSE_ERP_LOGIN={server.login}\n"
            f"  export METERCLOSE_ERP_PASSWORD={server.password}\n"
            "  make demo        # or: .venv/bin/meterclose publish --period 2026-09\n\n"
            "Ctrl-C stops Tryton and PostgreSQL and removes both.",
            flush=True,
        )
        with suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
