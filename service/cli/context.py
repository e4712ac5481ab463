"""The one way a command reaches the settings and the runtime: built once per invocation, closed with it.

Both live on the root Click context, so a command run in-process (a test's CliRunner, an embedding
script) gets fresh settings from the environment each time, and the engine it opened and the logging
it configured are put back when the invocation ends, as the end of a process would.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import click
from sqlalchemy.exc import SQLAlchemyError

from service.app.runtime import Runtime  # the composition root; imported here only, so that a move is one line
from service.config import Settings
from service.errors import ConfigError

__all__ = ["Runtime", "runtime", "settings"]

#: the loggers whose state `web.logs.configure` changes, and so the ones put back afterwards
_LOGGERS = ("", "alembic", "sqlalchemy.engine", "werkzeug")


@dataclass
class _Invocation:
    """What one invocation of `ketamine-fhir` has built so far."""

    settings: Settings | None = None
    runtime: Runtime | None = None
    migrated: bool = False
    logging: list[tuple[logging.Logger, int, list[logging.Handler], list[object]]] = field(default_factory=list)

    def close(self) -> None:
        if self.runtime is not None:
            self.runtime.engine.dispose()
        for logger, level, handlers, filters in self.logging:
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.filters[:] = filters  # type: ignore[assignment]


def _invocation() -> _Invocation:
    root = click.get_current_context().find_root()
    if not isinstance(root.obj, _Invocation):
        root.obj = _Invocation()
        root.call_on_close(root.obj.close)
    found: _Invocation = root.obj
    return found


def settings() -> Settings:
    """The settings from the KFHIR_* environment (a bad one is a usage error naming it); logging follows them."""
    state = _invocation()
    if state.settings is None:
        try:
            state.settings = Settings.load()
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        _configure_logging(state, state.settings.log_level)
    return state.settings


def runtime(migrated: bool = True) -> Runtime:
    """The runtime; for a command that reads or writes records (`migrated`) the schema must be current."""
    state = _invocation()
    if state.runtime is None:
        try:
            state.runtime = Runtime.build(settings())
        except ConfigError as exc:  # e.g. KFHIR_ENDPOINTS_FILE names a file that is not an endpoints file
            raise click.UsageError(str(exc)) from None
    if migrated and not state.migrated:
        _check_schema(state.runtime)
        state.migrated = True
    return state.runtime


def _check_schema(built: Runtime) -> None:
    from service.store.migrate import current_revision, head_revision

    try:
        revision = current_revision(built.engine)
    except SQLAlchemyError as exc:
        raise click.ClickException(f"cannot reach the database: {type(exc).__name__}") from None
    if revision != head_revision():
        raise click.UsageError("the database is not migrated: run `ketamine-fhir db upgrade` first")


def _configure_logging(state: _Invocation, level: str) -> None:
    """The same PHI-safe JSON lines as the web processes, until the invocation ends."""
    from service.web import logs

    for name in _LOGGERS:
        logger = logging.getLogger(name)
        state.logging.append((logger, logger.level, list(logger.handlers), list(logger.filters)))
    logs.configure(level)
