"""PostgreSQL's pooled connections: checked at checkout for a server that closed them while idle (without a round
trip), switched to autocommit for statements that run alone and back as they return to the pool, and refused a
write outside a transaction (driver.refuse_write_alone)."""
from __future__ import annotations

import select
import time
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DisconnectionError

from service.store import driver


def watched(engine: Engine) -> None:
    """Listen on `engine`'s pool and statements, as this module says."""
    event.listen(engine, "checkout", partial(_closed_while_idle, engine.dialect))
    event.listen(engine, "checkin", _idle_from)
    event.listen(engine, "before_cursor_execute", _no_write_alone)


def _no_write_alone(conn: Connection, _cursor: Any, statement: str, _params: Any, _context: Any,
                    _many: bool) -> None:
    driver.refuse_write_alone(conn, statement)


IDLE_PING_S = 30.0  # a connection idle longer is asked at checkout (one round trip): the keepalives' blind spot


def _idle_from(dbapi_conn: Any, record: Any) -> None:
    """A PostgreSQL connection back in the pool (rolled back already): out of autocommit mode (statements_alone), as
    the pool hands them out; one that cannot be is closed (the next checkout replaces it: _closed_while_idle)."""
    record.info["idle_since"] = time.monotonic()
    if dbapi_conn is not None and dbapi_conn.autocommit:
        try:
            dbapi_conn.autocommit = False
        except Exception:  # noqa: BLE001 - lost, or left in a transaction: not to be handed out again
            dbapi_conn.close()


def statements_alone(connection: Connection) -> Connection:
    """`connection` (a PostgreSQL one, just checked out) in autocommit mode until it goes back to the pool
    (_idle_from): each statement a transaction of its own, unless one is begun (pipeline.begin_with_first). psycopg's
    own switch: SQLAlchemy's isolation_level option, set here and reset at checkin, cost ~33 µs of CPU a checkout
    (47 against 14 µs: /work/notes/pg3-tools/alone_prof.py), and most of a request's checkouts take it."""
    connection.connection.driver_connection.autocommit = True  # type: ignore[union-attr]
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
