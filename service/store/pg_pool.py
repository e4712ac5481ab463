"""PostgreSQL's pooled connections: checked at checkout for a server that closed them while idle (without a round
trip), in psycopg's autocommit mode from the start, a transaction begun by the BEGIN sent with its first statement
(pipeline.py), and refused a write outside a transaction (driver.refuse_write_alone)."""
from __future__ import annotations

import select
import time
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DisconnectionError

from service.store import driver, pipeline

#: what make_engine gives psycopg.connect: every connection in autocommit mode for good. Most checkouts of a request
#: want it (alone, reading, a write's BEGIN sent with its first statement: 2-3 a request, every one served); switched
#: on at checkout and off at checkin, psycopg's setter twice cost ~18 µs of CPU a checkout (alone: 50.7 against 32.0
#: µs for a plain checkout, /work/notes/pg2-tools/alone_cost.py). A transaction is begun by _begun instead.
CONNECT_ARGS = {"autocommit": True}


def watched(engine: Engine) -> None:
    """Listen on `engine`'s pool and statements, as this module says."""
    event.listen(engine, "checkout", partial(_closed_while_idle, engine.dialect))
    event.listen(engine, "checkin", _idle_from)
    event.listen(engine, "begin", _begun)
    event.listen(engine, "before_cursor_execute", _no_write_alone)


def _begun(conn: Connection) -> None:
    """A transaction SQLAlchemy begins on a connection whose statements do not run alone (statements_alone): in
    autocommit mode psycopg sends no BEGIN, so it is sent before the transaction's first statement (pipeline.unbegun),
    as psycopg sent it out of autocommit; its COMMIT or ROLLBACK ends it as before."""
    if not conn.get_execution_options().get(driver.ALONE):
        pipeline.unbegun(conn.connection.driver_connection)


def _no_write_alone(conn: Connection, _cursor: Any, statement: str, _params: Any, _context: Any,
                    _many: bool) -> None:
    driver.refuse_write_alone(conn, statement)


IDLE_PING_S = 30.0  # a connection idle longer is asked at checkout (one round trip): the keepalives' blind spot


def _idle_from(_dbapi_conn: Any, record: Any) -> None:
    """A PostgreSQL connection back in the pool (rolled back already: a transaction left open is ended there)."""
    record.info["idle_since"] = time.monotonic()


def statements_alone(connection: Connection) -> Connection:
    """`connection` (a PostgreSQL one, just checked out), its statements each a transaction of its own (autocommit,
    as the pool's connections are: CONNECT_ARGS), unless one is begun (pipeline.begin_with_first): what SQLAlchemy
    begins on it begins nothing on the server (_begun)."""
    return connection.execution_options(**{driver.ALONE: True})


def _closed_while_idle(dialect: Any, dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """A pooled PostgreSQL connection the server closed while it sat idle (a restart, an administrator's
    pg_terminate_backend, an idle timeout) is replaced at checkout: SQLAlchemy reconnects when this raises.

    Instead of pool_pre_ping's `SELECT 1` (a round trip each checkout: 0.3-0.5 ms of wall time and 0.1-0.2 ms of
    CPU a request), a look at the socket without a round trip: an idle connection has nothing to read unless the
    server said goodbye (its FATAL message, then end of file). What this cannot see is a server that vanished without
    closing its end (a host down, a cable cut) until TCP keepalives mark the socket; a connection idle longer than
    IDLE_PING_S is therefore pinged (pool_pre_ping's round trip, only then)."""
    if dbapi_conn.closed or dbapi_conn.broken:
        raise DisconnectionError("the connection was closed")
    idle = select.poll()  # poll, not select(): no limit on the descriptor's number
    idle.register(dbapi_conn.pgconn.socket, select.POLLIN)
    if idle.poll(0):
        raise DisconnectionError("the database closed this connection while it was idle")
    if time.monotonic() - record.info.get("idle_since", time.monotonic()) > IDLE_PING_S:
        try:  # long idle: a host that vanished silently may not be known yet; a request must not find out
            dialect.do_ping(dbapi_conn)
        except Exception as error:  # noqa: BLE001 - whatever the driver raises, the connection is not usable
            raise DisconnectionError("the database did not answer a connection idle for long") from error
