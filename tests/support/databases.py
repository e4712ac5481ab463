"""Fresh databases for tests that need their own, apart from the one `database_url` gives each test: a SQLite
file, or a new database on the test PostgreSQL server (created and dropped here)."""
from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def create_database(server_url: str, name: str) -> str:
    """A new, empty PostgreSQL database `name` (any old one of that name dropped first); its URL."""
    url = make_url(server_url)
    admin = create_engine(url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    admin = create_engine(make_url(server_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def fresh_database(backend: str, postgres_url: str | None, workdir: Path) -> Iterator[str]:
    """A new, empty database: a SQLite file in `workdir`, or a new PostgreSQL database beside the test one
    (`postgres_url`), dropped at the end."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'live.db'}"
        return
    assert postgres_url is not None
    name = f"kfhir_live_{uuid.uuid4().hex[:12]}"
    url = create_database(postgres_url, name)
    try:
        yield url
    finally:
        drop_database(postgres_url, name)


def copy_sqlite(source: Path, target: Path) -> Path:
    """A copy of SQLite file `source` at `target` by SQLite's online backup: consistent whatever another connection
    does meanwhile. A file copy could be torn by the checkpointer (store/checkpoint.py), whose thread may still copy
    the template's WAL into its file after the template's engine is disposed ("database disk image is malformed"
    once, on 12-05)."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    return target
