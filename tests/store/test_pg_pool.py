"""PostgreSQL's pooled connections (service/store/pg_pool.py): one the server closed while it sat idle is replaced
at checkout, one idle for long is pinged first, and each runs its statements alone or in a transaction without
a switch of psycopg's mode between them."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from service.store import pg_pool
from service.store.engine import make_engine, session


def test_connections_the_server_closed_while_idle_are_replaced_without_a_failed_request(
        postgres_engine: Engine) -> None:
    """What a restart does to a pool's idle connections (each backend told FATAL, then closed), done by
    pg_terminate_backend on the shared test server: every request after it still gets a working connection, found at
    checkout by a look at the socket, not a `SELECT 1` round trip (pool_pre_ping) before every request."""
    engine = make_engine(postgres_engine.url.render_as_string(hide_password=False))
    try:
        assert not engine.pool._pre_ping
        held = [engine.connect() for _ in range(3)]  # three connections in the pool
        pids = [conn.execute(text("SELECT pg_backend_pid()")).scalar() for conn in held]
        for conn in held:
            conn.close()
        with postgres_engine.connect() as admin:
            assert all(admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar() for pid in pids)
            for _ in range(100):  # until the backends are gone
                if not admin.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                                     {"pids": pids}).scalar():
                    break
                time.sleep(0.05)
        served = []
        for _ in range(5):
            with engine.connect() as conn:
                served.append(conn.execute(text("SELECT pg_backend_pid()")).scalar())
        assert not set(served) & set(pids)
    finally:
        engine.dispose()


def test_a_connection_idle_for_long_is_pinged_and_replaced_if_it_does_not_answer(
        postgres_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a half-open connection does to a ping (no answer, an error), done by a ping that fails: the request gets
    a new connection, not the error. A connection back from recent use is not pinged (no round trip per request)."""
    engine = make_engine(postgres_engine.url.render_as_string(hide_password=False))
    pings: list[object] = []

    def ping(dbapi_conn: object) -> bool:
        pings.append(dbapi_conn)
        raise OSError("no answer")

    monkeypatch.setattr(engine.dialect, "do_ping", ping)
    try:
        with engine.connect() as conn:
            first = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with engine.connect() as conn:  # back from recent use: no ping, the same connection
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() == first
        assert pings == []
        monkeypatch.setattr(pg_pool, "IDLE_PING_S", 0.0)
        time.sleep(0.01)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != first
        assert len(pings) == 1
    finally:
        engine.dispose()


def test_the_pools_connections_run_alone_or_in_a_transaction_with_no_switch_between(postgres_engine: Engine) -> None:
    """The pool's connections stay in psycopg's autocommit mode (pg_pool.CONNECT_ARGS): alone()'s statements each
    commit at once; a transaction SQLAlchemy begins elsewhere is one (its BEGIN sent before its first statement), even
    after a connection was left in a transaction or a transaction began and sent nothing."""
    from service.store.engine import WRITE, alone, execute_alone

    engine = make_engine(postgres_engine.url.render_as_string(hide_password=False))
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE pooled_t (n integer)"))
        for left_open in (False, True):
            with alone(engine) as connection:
                raw = connection.connection.driver_connection
                assert raw is not None and raw.autocommit
                if left_open:
                    connection.exec_driver_sql("BEGIN")
                connection.execution_options(**{WRITE: True}).execute(text("INSERT INTO pooled_t VALUES (1)"))
            with engine.connect() as connection:
                assert connection.connection.driver_connection is raw and raw.autocommit  # no switch back
                connection.execute(text("INSERT INTO pooled_t VALUES (2)"))
                connection.execute(text("CREATE TEMPORARY TABLE t (n integer)"))
                connection.rollback()  # undoes both: they ran in one transaction
                assert connection.execute(text("SELECT to_regclass('t')")).scalar() is None
            with engine.connect() as connection:  # a transaction that sent nothing leaves nothing begun
                connection.begin()
                connection.commit()
            execute_alone(engine, text("INSERT INTO pooled_t VALUES (3)"), {})  # committed alone, at once
            with postgres_engine.connect() as other:
                # the insert after a BEGIN left open is undone as the pool takes its connection back
                assert other.execute(text("SELECT n FROM pooled_t ORDER BY n")).scalars().all() == [1, 3] + [3] * left_open
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS pooled_t"))
        engine.dispose()


def test_a_transaction_outside_the_write_path_keeps_the_databases_isolation_level(postgres_engine: Engine) -> None:
    """A deployment that sets default_transaction_isolation (for the database, a role, or as here the session of the
    pool's one connection) gets it for the transactions SQLAlchemy begins outside the write path (an ORM session, a
    fresh read: admin, CLI, migrations), as with psycopg's plain BEGIN before the pool ran in autocommit mode; a write
    still runs READ COMMITTED, which its retries of a concurrent write assume."""
    engine = make_engine(postgres_engine.url.render_as_string(hide_password=False))
    show, pid = text("SHOW transaction_isolation"), text("SELECT pg_backend_pid()")
    try:
        with engine.connect() as conn:
            conn.execute(text("SET SESSION default_transaction_isolation = 'serializable'"))
            conn.commit()
            first = conn.execute(pid).scalar()
        with Session(engine) as orm, orm.begin():
            assert (orm.execute(pid).scalar(), orm.execute(show).scalar()) == (first, "serializable")
        with session(engine, fresh=True) as fresh:
            assert (fresh.execute(pid).scalar(), fresh.execute(show).scalar()) == (first, "serializable")
        with session(engine, write=True) as write:
            assert (write.execute(pid).scalar(), write.execute(show).scalar()) == (first, "read committed")
    finally:
        engine.dispose()
