"""Shared fixtures: `app`/`client` on a database (a SQLite file; also the PostgreSQL server that `make test`
starts for tests marked `both_backends`), `runtime` for core tests, and the test tiers' markers.

/api and /fhir deny by default, so every test database holds the API client `tests` with every scope
(FULL_SCOPES), and every Flask test client of an app on that database sends its key (TokenClient,
installed for all apps below). `anonymous_client` sends none; `api_key(*scopes)` makes a narrower one.

Backends: a test that asks for `database_url` (or app, client, runtime, settings) runs on SQLite only,
unless it is marked `both_backends` (or parametrizes `database_url` itself): PostgreSQL is for what the two
backends do differently (claims, locks, races, constraints, migrations, triggers, NUL, types), not for
every request test twice. Tiers (markers set below by path or fixture): peer, browser, fuzz, postgres."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# from a module of their own: a test module's `from conftest import …` loads this file a second time
from argon2 import PasswordHasher
from credentials import FULL_SCOPES, KEYS, TokenClient
from flask import Flask
from flask.testing import FlaskClient

# the HAPI FHIR JPA peers, registered once: imported into each test module, each module would start its own
from peers.hapi_server import hapi_server  # noqa: F401
from peers.medplum_server import medplum_server  # noqa: F401
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from support.databases import copy_sqlite, create_database, drop_database

from service import create_app
from service.admin import accounts
from service.admin.history import record_current
from service.app.runtime import Runtime
from service.config import Settings
from service.security.keys import ApiClients
from service.store.engine import make_engine
from service.store.migrate import upgrade

BACKENDS = ["sqlite", "postgresql"]
Flask.test_client_class = TokenClient
TESTS = Path(__file__).resolve().parent

#: markers by path (relative to tests/, a folder ends in "/"): the slow tiers `make check` leaves out
TIERS: dict[str, str] = {
    "peers/": "peer",                               # the HAPI FHIR server and validator, built with Maven
    "validation/test_hapi_agreement.py": "peer",
    "admin/test_browser.py": "browser",             # chromium through chromedriver
    "admin/test_console_browser.py": "browser",
    "admin/test_try_browser.py": "browser",
    "exchange/test_sandbox_report_browser.py": "browser",
    "hardening/test_fuzz_openapi.py": "fuzz",       # sized by KFHIR_FUZZ_REQUESTS (`make fuzz`: the full runs)
    "hardening/test_fuzz_facade.py": "fuzz",
    "hardening/test_parsers.py": "fuzz",
    "validation/test_fuzz.py": "fuzz",              # hostile JSON at the validator (KFHIR_FUZZ_EXAMPLES)
    "validation/test_fuzz_outcome.py": "fuzz",      # any definition named: an OperationOutcome (KFHIR_FUZZ_REQUESTS)
    "validation/test_fhirpath_compiled.py": "fuzz",  # generated and mutated nodes through both FHIRPaths: 100 s
}
#: argon2id at its lowest cost: the library's defaults (production's) cost about 0.1 s a hash on an idle core and
#: 0.5 s on this busy 2-core machine, twice per signed-in test; no test depends on the cost (the parameters
#: travel in each hash, so a hash made either way verifies either way)
QUICK_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
#: fixtures that start a peer server (HAPI FHIR's JVM, Medplum's Node): their tests are the peer tier too
PEER_FIXTURES = {"hapi_server", "hapi", "medplum_server", "ehr_peer"}
#: fixtures that reach the PostgreSQL server
POSTGRES_FIXTURES = {"postgres_engine", "postgres_admin_url"}
#: pytest-xdist (`make test` runs `-n 2 --dist loadgroup`) sends each test to any worker, except these, which
#: stay together on one: the users of the session's HAPI FHIR JPA server (one JVM, not one per worker), and
#: modules whose module-scoped fixture runs something costly (live servers, a HAPI validator run, a wheel)
XDIST_GROUPS: dict[str, str] = {
    "facade/test_live_client.py": "live-client",
    "facade/test_fhirpy.py": "fhirpy-live",
    "exchange/test_sandbox.py": "sandbox-live",
    "exchange/test_exchange_peers.py": "hapi-server",   # ehr_peer: the session's HAPI FHIR JVM among them
    "exchange/test_sandbox_peers.py": "hapi-server",
    "conformance/test_examples.py": "hapi-examples",
    "conformance/test_ig.py": "ig-package",
    "validation/test_hapi_agreement.py": "hapi-agreement",
    "peers/test_hapi_validator.py": "hapi-validator",
    "peers/test_hapi_tx.py": "hapi-tx",                 # a HAPI FHIR JPA server of its own, as terminology server
    "test_packaging.py": "wheel",
    "bench/test_loadgen.py": "loadgen",                 # builds the Go load generator once (module fixture)
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`database_url`: SQLite, and PostgreSQL too for tests marked both_backends (unless the test chose)."""
    if "database_url" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        if "database_url" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return
    both = metafunc.definition.get_closest_marker("both_backends") is not None
    metafunc.parametrize("database_url", BACKENDS if both else BACKENDS[:1], indirect=True)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads xdist_group and `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        where = Path(str(item.path)).relative_to(TESTS).as_posix() if TESTS in item.path.parents else ""
        for prefix, marker in TIERS.items():
            if where == prefix or (prefix.endswith("/") and where.startswith(prefix)):
                item.add_marker(marker)
        names = set(getattr(item, "fixturenames", ()))
        if names & PEER_FIXTURES:
            item.add_marker("peer")
        if "hapi_server" in names:
            item.add_marker(pytest.mark.xdist_group("hapi-server"))
        elif where in XDIST_GROUPS:
            item.add_marker(pytest.mark.xdist_group(XDIST_GROUPS[where]))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if names & POSTGRES_FIXTURES or "postgresql" in params.values():
            item.add_marker("postgres")


@pytest.fixture(autouse=True)
def quick_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process admin accounts hash with QUICK_HASHER (processes the tests start use the real one)."""
    monkeypatch.setattr(accounts, "HASHER", QUICK_HASHER)  # the dummy hash of unknown usernames follows it


def postgres_url() -> str:
    url = os.environ.get("KFHIR_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("KFHIR_TEST_POSTGRES_URL is not set: run the tests with `make test`, which starts "
                    "PostgreSQL, or point it at an empty database you own.", pytrace=False)
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating costs more than copying), with what every
    app records at start-up already there (the mapping versions: parsing their YAML costs more still)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    record_current(engine)
    KEYS["template"] = ApiClients(engine).add("tests", FULL_SCOPES)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[Engine]:
    """The test database, migrated; under pytest-xdist each worker's own (kfhir_test_gw0, ...), since tests
    empty it between them."""
    url, worker = postgres_url(), os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        url = create_database(url, f"{make_url(url).database}_{worker}")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(engine)
    yield engine
    engine.dispose()
    if worker:
        drop_database(postgres_url(), make_url(url).database or "")


def _empty_postgres(engine: Engine) -> None:
    with engine.begin() as conn:
        names = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"))]
        if names:  # the audit trail refuses TRUNCATE (a trigger); the tests' own reset skips triggers (superuser)
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database: SQLite unless parametrized with "postgresql" (see pytest_generate_tests)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        target = tmp_path / "kfhir.db"
        copy_sqlite(request.getfixturevalue("sqlite_template"), target)
        KEYS[f"sqlite:///{target}"] = KEYS["template"]
        return f"sqlite:///{target}"
    engine = request.getfixturevalue("postgres_engine")
    _empty_postgres(engine)
    url = engine.url.render_as_string(hide_password=False)
    KEYS[url] = ApiClients(engine).add("tests", FULL_SCOPES)
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings.load({"database_url": database_url}, environ={})


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.build(settings)
    yield rt
    rt.engine.dispose()


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    application.config["TESTING"] = True
    yield application
    application.extensions["kfhir_security"].audit.close()  # its open bursts go to its own database, not the next test's
    application.extensions["kfhir"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def anonymous_client(app: Flask) -> FlaskClient:
    """A client that sends no credentials."""
    return FlaskClient(app, app.response_class, use_cookies=True)


@pytest.fixture
def api_key(database_url: str) -> Iterator[Callable[..., str]]:
    """`api_key("system/Patient.rs", ...)`: the key of a new client with just these scopes."""
    engine = make_engine(database_url)
    made = iter(range(1, 10_000))

    def make(*scopes: str) -> str:
        return ApiClients(engine).add(f"limited-{next(made)}", list(scopes))

    yield make
    engine.dispose()
