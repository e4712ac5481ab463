"""PostgreSQL plans each statement for its values: a search's statement text is the same for every value searched,
and the plan psycopg's prepared statements drifted to (after 5 runs) cost a served search 12 ms of PostgreSQL CPU
instead of 2."""
from __future__ import annotations

from sqlalchemy import Engine, text

from service.store.engine import make_engine


def test_every_connection_plans_for_the_values_of_each_execution(postgres_engine: Engine) -> None:
    engine = make_engine(postgres_engine.url.render_as_string(hide_password=False))
    try:
        for _ in range(2):  # a new connection, then one from the pool
            with engine.connect() as conn:
                assert conn.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
    finally:
        engine.dispose()


def test_connections_carry_tcp_keepalives(postgres_engine: Engine) -> None:
    """A server host gone without closing its end shows on the socket only through keepalives."""
    engine = make_engine(postgres_engine.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            parameters = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
        assert (parameters["keepalives"], parameters["keepalives_idle"]) == ("1", "30")
    finally:
        engine.dispose()
