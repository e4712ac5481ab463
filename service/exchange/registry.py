"""The EHR endpoints every process shares, recorded in the database (migration 0010).

A record's outbox jobs are made from the endpoints read in the record's own transaction, so whether an edit is
queued never depends on which process stored it or which file that process read. KFHIR_ENDPOINTS_FILE is an
import: each process imports it when it starts (and `endpoints import` does on request). An import adds the
endpoints the database lacks and brings the others' definitions up to the file's; it never re-enables an
endpoint someone disabled, nor removes one the file no longer names (disable it). Importing the same file
again changes nothing.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from service.errors import Conflict, NotFound
from service.exchange.endpoints import Endpoint
from service.store import driver
from service.store.engine import session as transaction
from service.store.models import EndpointRow
from service.store.records import utcnow

log = logging.getLogger(__name__)

ENDPOINTS = cast(Table, EndpointRow.__table__)
EVERY = select(ENDPOINTS).order_by(ENDPOINTS.c.name)
ENABLED = EVERY.where(ENDPOINTS.c.enabled.is_(True))
#: what a record's transaction needs to queue it: the enabled endpoints' names and the kinds each takes
QUEUES = select(ENDPOINTS.c.name, ENDPOINTS.c.kinds).where(ENDPOINTS.c.enabled.is_(True)).order_by(ENDPOINTS.c.name)
#: the columns an import compares and brings up to the file's (not `enabled`: a person's choice once made)
DEFINITION = ("base_url", "auth", "mode", "max_entries", "timeout_s", "kinds", "note")


@dataclass
class Imported:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{len(self.added)} added, {len(self.updated)} updated, {len(self.unchanged)} unchanged"


class Endpoints:
    """The endpoints in the database; `declared` (the file's) are imported on first use if not at start."""

    def __init__(self, engine: Engine, declared: list[Endpoint] | None = None, source: str = "",
                 environ: Mapping[str, str] | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.declared = list(declared or [])
        self.source = source
        self.clock = clock
        self._environ = environ  # None: the process's environment when a secret is read
        self._imported = not self.declared
        #: what importing `declared` did, once it has
        self.started: Imported | None = None

    # --- reading ---------------------------------------------------------------------------------

    def all(self) -> list[Endpoint]:
        """Every endpoint, enabled or not, by name."""
        self.import_declared()
        with transaction(self.engine) as session:
            return self.within(session, enabled_only=False)

    def enabled(self) -> list[Endpoint]:
        return [e for e in self.all() if e.enabled]

    def find(self, name: str) -> Endpoint | None:
        return next((e for e in self.all() if e.name == name), None)

    def within(self, session: Session, enabled_only: bool = True) -> list[Endpoint]:
        """The endpoints as `session` sees them: what a record's transaction enqueues for (read through Core with
        statements built once: every domain record asks)."""
        return [self._of(row) for row in session.connection().execute(ENABLED if enabled_only else EVERY)]

    def taking(self, session: Session, kind: str) -> list[str]:
        """The names of the enabled endpoints that take records of `kind`, as `session` sees them: what a record's
        transaction queues it for (within() built every Endpoint, a copy of the environment each, per record)."""
        connection = session.connection()
        found = driver.select(connection, QUEUES, {})  # on SQLite's own cursor: inside the writers' turn
        return [name for name, kinds in (connection.execute(QUEUES) if found is None else found)
                if kind in kinds.split()]

    def _of(self, row: EndpointRow | Any) -> Endpoint:
        env = dict(os.environ if self._environ is None else self._environ)
        return Endpoint(row.name, row.base_url, dict(row.auth), row.mode, row.max_entries, row.timeout_s,
                        tuple(row.kinds.split()), row.enabled, row.note, env, row.added_at, row.added_by,
                        row.enabled_at)

    # --- changing --------------------------------------------------------------------------------

    def add(self, endpoint: Endpoint, by: str) -> Endpoint:
        """A new endpoint (Conflict when the name is taken: change a file's endpoint by importing the file)."""
        try:
            with transaction(self.engine, write=True) as session:
                if session.get(EndpointRow, endpoint.name) is not None:
                    raise Conflict(f"An endpoint named {endpoint.name!r} exists already.")
                session.add(self._row(endpoint, by))
        except IntegrityError:  # another process added the same name in between
            raise Conflict(f"An endpoint named {endpoint.name!r} exists already.") from None
        return self._get(endpoint.name)

    def set_enabled(self, name: str, enabled: bool) -> Endpoint:
        """Enable or disable `name`. A disabled endpoint is sent nothing new (records stored meanwhile are not
        queued for it; `push --all` sends them later); its queued jobs wait, and workers leave them."""
        now = self.clock()
        with transaction(self.engine, write=True) as session:
            row = session.get(EndpointRow, name, with_for_update=self.engine.dialect.name == "postgresql")
            if row is None:
                raise NotFound(f"No endpoint named {name!r}.")
            if row.enabled != enabled:
                row.enabled, row.updated_at = enabled, now
                if enabled:
                    row.enabled_at = now
                else:
                    row.disabled_at = now
        return self._get(name)

    def import_(self, endpoints: list[Endpoint], source: str) -> Imported:
        """Add what the database lacks, bring changed definitions up to `endpoints`; idempotent."""
        for attempt in (1, 2):
            try:
                return self._import(endpoints, source)
            except IntegrityError:  # two processes starting at once added the same name: the second look sees it
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _import(self, endpoints: list[Endpoint], source: str) -> Imported:
        done, now = Imported(), self.clock()
        with transaction(self.engine, write=True) as session:
            for endpoint in endpoints:
                row = session.get(EndpointRow, endpoint.name)
                if row is None:
                    session.add(self._row(endpoint, source))
                    done.added.append(endpoint.name)
                    continue
                wanted = self._row(endpoint, source)
                changed = [c for c in DEFINITION if getattr(row, c) != getattr(wanted, c)]
                for column in changed:
                    setattr(row, column, getattr(wanted, column))
                if changed:
                    row.updated_at = now
                (done.updated if changed else done.unchanged).append(endpoint.name)
        return done

    def import_declared(self) -> Imported | None:
        """Import the file's endpoints once per process; None when done already or the database cannot take
        them yet (not migrated, unreachable: the next use tries again)."""
        if self._imported:
            return None
        try:
            done = self.import_(self.declared, self.source)
        except SQLAlchemyError as exc:
            log.warning("endpoints file not imported yet: %s", type(exc).__name__)
            return None
        self._imported, self.started = True, done
        if done.added or done.updated:
            log.info("endpoints file imported: %s", done.summary())
        return done

    def _get(self, name: str) -> Endpoint:
        with transaction(self.engine) as session:
            row = session.get(EndpointRow, name)
            if row is None:
                raise NotFound(f"No endpoint named {name!r}.")
            return self._of(row)

    def _row(self, endpoint: Endpoint, by: str) -> EndpointRow:
        now = self.clock()
        return EndpointRow(name=endpoint.name, base_url=endpoint.base_url, auth=dict(endpoint.auth),
                           mode=endpoint.mode, max_entries=endpoint.max_entries, timeout_s=endpoint.timeout_s,
                           kinds=" ".join(endpoint.kinds), note=endpoint.note, enabled=endpoint.enabled,
                           added_at=now, added_by=by[:200], enabled_at=now,
                           disabled_at=None if endpoint.enabled else now, updated_at=now)

