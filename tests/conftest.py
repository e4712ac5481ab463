"""Shared fixtures: `app`/`client` on each database backend (SQLite file, the PostgreSQL server
that `make test` starts), `runtime` for core tests, and the record factories.

/api and /fhir deny by default, so every test database holds the API client `tests` with every scope
(FULL_SCOPES), and every Flask test client of an app on that database sends its key (TokenClient,
installed for all apps below). `anonymous_client` sends none; `api_key(*scopes)` makes a narrower one."""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# from a module of their own: a test module's `from conftest import …` loads this file a second time
from credentials import FULL_SCOPES, KEYS, TokenClient
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from service import create_app
from service.app.runtime import Runtime
from service.config import Settings
from service.security.keys import ApiClients
from service.store.engine import make_engine
from service.store.migrate import upgrade

BACKENDS = ["sqlite", "postgresql"]
Flask.test_client_class = TokenClient


def postgres_url() -> str:
    url = os.environ.get("KFHIR_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("KFHIR_TEST_POSTGRES_URL is not set: run the tests with `make test`, which starts "
                    "PostgreSQL, or point it at an empty database you own.", pytrace=False)
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating costs more than copying)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    KEYS["template"] = ApiClients(engine).add("tests", FULL_SCOPES)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[Engine]:
    engine = make_engine(postgres_url())
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(engine)
    yield engine
    engine.dispose()


def _empty_postgres(engine: Engine) -> None:
    with engine.begin() as conn:
        names = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"))]
        if names:
            conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        target = tmp_path / "kfhir.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
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
