"""FHIR resource repository: versions, history, search index and conditional-create claims.

Every write happens in a `Unit` (one database transaction), so a transaction Bundle is all or
nothing and a single interaction is atomic too. A write bumps the version, appends to the
history and rewrites the resource's search index rows in the same transaction.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.orm import Session

from service.search.parameters import index
from service.search.query import Query
from service.store import driver, postgres
from service.store import statements as sql
from service.store.batch import UNSENT, Batch, Drafted, index_rows, joined
from service.store.engine import SHARED_READ, connection_of, keyed_read, session, wrote
from service.store.models import ConditionalClaimRow, ResourceVersionRow
from service.store.records import utcnow
from service.store.searches import Searches, note_named
from service.store.stored import StoredResource, restamped, versioned

#: versions are INTEGER columns (32 bits); a larger version cannot exist
MAX_VERSION = 2**31 - 1
#: Session.info key of the patients the rows a read transaction read name, by id: their `identifier` lists (read)
NAMED_PATIENTS = "kfhir_named_patients"


#: the unit of work this thread has open through ResourceStore.unit, until its transaction has ended: what runs in
#: it just before it commits (the audit event's patient lookup, store/engine.BEFORE_COMMIT) finds the rows it read
OPEN_UNIT: ContextVar[Unit | None] = ContextVar("kfhir_open_unit", default=None)


#: (issuer, client id) of the API client on whose behalf a transaction writes
Author = tuple[str, str]
#: (scope resource, letters) → may the client on whose behalf a transaction writes do that?
Permits = Callable[[str, str], bool]
#: what a failure raises, of the error SQLAlchemy raised
Failed = Callable[[BaseException], BaseException]


class ResourceStore:
    def __init__(self, engine: Engine, author: Author | None = None, permits: Permits | None = None) -> None:
        self.engine = engine
        self.author = author
        self.permits = permits

    def acting_for(self, author: Author | None, permits: Permits | None = None) -> ResourceStore:
        """This store, its transactions writing on behalf of `author` (None: the server itself, e.g. the CLI),
        whose scopes `permits` answers for (None: everything, the server's own writes)."""
        return ResourceStore(self.engine, author, permits)

    @property
    def one_writer(self) -> bool:
        """Whether this store's write units run one at a time (SQLite), so that what each does in its unit every
        other writer waits for; PostgreSQL's run at once."""
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def unit(self, write: bool = False, keyed: bool = False) -> Iterator[Unit]:
        """`keyed`: a read of a few rows found by key (engine.KEYED)."""
        token = OPEN_UNIT.set(None)
        try:
            # its end runs BEFORE_COMMIT, with OPEN_UNIT still set
            with session(self.engine, write, keyed=keyed) as current:
                OPEN_UNIT.set(opened := Unit(current, self.author, permits=self.permits))
                yield opened
        finally:
            OPEN_UNIT.reset(token)

    @contextmanager
    def read_by_key(self) -> Iterator[Unit]:
        """unit(keyed=True) for reads by key (get, prefetch) on a Core connection (engine.keyed_read), its Session
        begun only if something asks for it (a search): a facade create's read ahead (ResourceWritten.ahead) read its
        rows and a record by key, and the Session's transaction cost as much as those reads. Inside a read route's
        shared transaction (SHARED_READ), unit(keyed=True), which joins it."""
        if SHARED_READ.get() is not None:
            with self.unit(keyed=True) as joined:
                yield joined
            return
        token = OPEN_UNIT.set(None)
        try:
            with keyed_read(self.engine) as connection:
                OPEN_UNIT.set(opened := Unit(None, self.author, permits=self.permits, connection=connection))
                try:
                    yield opened
                finally:
                    opened.close_session()
        finally:
            OPEN_UNIT.reset(token)


class Unit(Searches):
    """The operations of one transaction (its searches and history: store/searches.py), and on whose behalf it
    writes (what each version's Provenance says).

    The current rows are read and written as plain SQL (Core), not as ORM objects: a domain record's write
    spent more time in the ORM's flush (its unit of work, events, identity map) than in SQLite. Searches still
    select ORM rows, refreshed from the database (populate_existing) since the Core writes pass the ORM by."""

    def __init__(self, session: Session | None, author: Author | None = None, record_id: str | None = None,
                 permits: Permits | None = None, failed: Failed | None = None,
                 connection: Connection | None = None) -> None:
        """`connection`: the transaction's, if known, else the session's when first asked; `session` None: the unit
        reads on `connection` (ResourceStore.read_by_key), a Session bound to it made only if asked for (session)."""
        self._session = session
        self.author = author
        self._permits = permits
        #: the clinic record whose FHIR form this transaction writes, if it is one (the Provenance's source)
        self.record_id = record_id
        #: main resources already read into clinic records in this transaction (see service/app/flows.py)
        self.linked: set[str] = set()
        #: (version `Type/id/_history/n`, created, when) of the versions written so far, while a Bundle or a record
        #: is written (the facade writes their Provenance at its end); None: each write writes its own
        self.provenance: list[tuple[str, bool, datetime]] | None = None
        #: rows this transaction has read or written, by (type, id), None for one it found absent: a write's
        #: reference checks, its update and the record read back from it asked for the same rows again and again
        #: (a domain record took 228 statements, half of them repeats). SQLite's writer holds the database from
        #: BEGIN IMMEDIATE; on PostgreSQL a concurrent create of the same id fails this one's INSERT on the
        #: unique constraint, as it did between a lookup and the INSERT before.
        self._rows: dict[tuple[str, str], StoredResource | None] = {}
        #: conditional matches (If-None-Exist, a conditional update) found since this transaction last wrote, by
        #: (type, criteria): a record's people were searched for by keep_current, then again by its export
        self.matched: dict[tuple[str, str], StoredResource | None] = {}
        #: the rows of the writes not sent yet, inside batch(); None: each write sends its own
        self._batch: Batch | None = None
        self._connection = connection
        #: the rows of its last batch (by key) while they wait to go with the next statement or the COMMIT
        #: (PostgreSQL: batch), and what their failure then raises (the error as SQLAlchemy raises it, or what the
        #: caller makes of it: `failed`)
        self._later: Mapping[tuple[str, str], Any] = {}
        self._failed = failed or _as_is

    @property
    def session(self) -> Session:
        """The transaction's Session: of a unit that reads on a connection, one bound to it, made when first asked
        (its construction and close cost more than the few reads by key such a unit makes)."""
        if self._session is None:
            self._session = Session(bind=self.connection)
        return self._session

    def close_session(self) -> None:
        """Close the Session made for a unit that reads on a connection (session), if one was."""
        if self._session is not None:
            self._session.close()

    @property
    def connection(self) -> Connection:
        """The transaction's connection: Session.connection() cost ~10 µs a call, and a write unit made many."""
        if self._connection is None:
            self._connection = connection_of(self.session)
        return self._connection

    @classmethod
    def on(cls, current: Session) -> Unit:
        """The unit this thread has open on `current` (ResourceStore.unit), with the rows it has read, or a new one."""
        found = OPEN_UNIT.get()
        return found if found is not None and found.session is current else cls(current)

    def permits(self, resource: str, letters: str) -> bool:
        """Whether the client this transaction writes for holds `letters` on `resource` (the server: always)."""
        return self._permits is None or self._permits(resource, letters)

    def _row(self, resource_type: str, resource_id: str) -> StoredResource | None:
        key = (resource_type, resource_id)
        if key not in self._rows:
            found = self._current(sql.GET_ROW, {"the_type": resource_type, "the_id": resource_id})
            self._rows[key] = found[0] if found else None
        return self._rows[key]

    def _current(self, statement: Any, params: dict[str, Any]) -> list[StoredResource]:
        """The current resources a statement selecting fhir_resources' row finds: on SQLite on the driver's cursor
        (store/driver.py: through Core each read cost ~100 µs more, in the write unit every other writer waits for)."""
        connection = self.connection
        found = driver.select(connection, statement, params)
        if found is None:
            return [StoredResource.of_columns(row) for row in connection.execute(statement, params)]
        return [StoredResource(*row) for row in found]

    def prefetch(self, keys: list[tuple[str, str]]) -> None:
        """Read the rows of these (type, id) pairs in one statement, for the lookups that follow (a write's
        references: one statement instead of one each)."""
        wanted = [k for k in dict.fromkeys(keys) if k not in self._rows]
        if len(wanted) > 1:
            self._rows.update(dict.fromkeys(wanted))
            for start in range(0, len(wanted), sql.PREFETCH_CHUNK):
                chunk = wanted[start:start + sql.PREFETCH_CHUNK]
                size = sql.bucket(len(chunk))  # the last pair repeated up to the statement's size: the same rows
                pairs = chunk + [chunk[-1]] * (size - len(chunk))
                params = {f"t{n}": t for n, (t, _) in enumerate(pairs)} | {f"i{n}": i for n, (_, i) in enumerate(pairs)}
                for row in self._current(sql.prefetch_statement(size), params):
                    self._rows[row.resource_type, row.id] = row

    def look_up(self, keys: Callable[[], list[tuple[str, str]]], matches: Mapping[tuple[str, str], Query]) -> None:
        """On PostgreSQL, prefetch(keys) and what the conditional searches `matches` find (each by its key in
        `matched`), in one statement (store/postgres.LOOK_UP_SQL) where each was a round trip: a search that finds
        one resource or none is kept in `matched`, as facade.match_in keeps it; one that finds more, or is not
        TOKEN_MATCH's, is left to match_in (which says why). Elsewhere nothing, `keys()` not even worked out: each is
        asked when needed."""
        connection = self.connection
        if connection.dialect.name != "postgresql":
            return
        self._send()
        wanted = [k for k in dict.fromkeys(keys()) if k not in self._rows]
        searches = {key: query for key, query in matches.items() if key not in self.matched and sql.one_token(query)}
        if not wanted and not searches:
            return
        self._rows.update(dict.fromkeys(wanted))
        found = postgres.look_up(connection, wanted, [sql.token_params(query) for query in searches.values()])
        for row in found[0]:
            self._rows[row[1], row[2]] = StoredResource(*row)
        for n, (key, query) in enumerate(searches.items(), 1):
            page, _ = sql.uncounted(query, [StoredResource(*row) for row in found[n]])
            if len(page) <= 1:
                self.matched[key] = page[0] if page else None

    def adopt(self, rows: Mapping[tuple[str, str], StoredResource | None]) -> None:
        """Take rows read before this unit began (in a read transaction of their own) as read here, those that are
        still current: one statement reads the key, version and record of those present, on the driver's cursor
        (store/driver.py). A version is written once, so a row at the same key and version with the same record holds
        the same content (a delete makes a version; link_record changes the record alone). A row changed since, or
        an id not held then, is read as usual when asked for."""
        known = {key: row for key, row in rows.items() if row is not None and key not in self._rows}
        if not known:
            return
        connection = self.connection
        mark = driver.placeholder(connection)
        keys = list(known)
        for start in range(0, len(keys), sql.PREFETCH_CHUNK):
            chunk = keys[start:start + sql.PREFETCH_CHUNK]
            if mark is None:  # a driver of another parameter style: read them whole
                self.prefetch(chunk)
                continue
            for resource_type, resource_id, pk, version, record_id in driver.rows(
                    connection, sql.versions_sql(mark, len(chunk)), [part for key in chunk for part in key]):
                row = known[resource_type, resource_id]
                if (pk, version, record_id) == (row.pk, row.version, row.record_id):
                    self._rows[resource_type, resource_id] = row

    def get(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """The current version, deleted or not; None when the id was never used."""
        return self._row(resource_type, resource_id)

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """get(), noting in the transaction the identifiers of the patient the row names (READ_ROW), or of itself if
        a Patient (named_patients), read in the same statement."""
        key = (resource_type, resource_id)
        if key in self._rows:
            return self._rows[key]
        self._send()
        found = self.connection.execute(sql.READ_ROW, {"the_type": resource_type,
                                                             "the_id": resource_id}).one_or_none()
        self._rows[key] = stored = StoredResource.of_columns(found) if found is not None else None
        named = self.named_patients()
        if found is not None:
            note_named(named, found.named)
        if stored is not None and resource_type == "Patient":
            named[resource_id] = (stored.content or {}).get("identifier")
        return stored

    def named_patients(self) -> dict[str, Any]:
        """The patients named by what this transaction read (read), by id: each one's `identifier` (as stored: a
        list, or None for a deleted patient)."""
        named: dict[str, Any] = self.session.info.setdefault(NAMED_PATIENTS, {})
        return named

    def version(self, resource_type: str, resource_id: str, version: int) -> StoredResource | None:
        if not 0 < version <= MAX_VERSION:  # PostgreSQL refuses to compare an INTEGER column with a larger number
            return None
        self._send()
        row = self.session.scalars(select(ResourceVersionRow).where(
            ResourceVersionRow.resource_type == resource_type, ResourceVersionRow.id == resource_id,
            ResourceVersionRow.version == version)).one_or_none()
        return StoredResource.of_version(row) if row else None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the rows of the writes made inside and send them together as the block ends, or before anything
        reads them (store/batch.py); a failure (a concurrent create of the same id) is raised by then."""
        outer = self._batch  # inside a batch already: it goes on holding what comes after
        self._batch = outer or Batch()
        try:
            yield
            self._send(later=outer is None)
        finally:
            if outer is None:
                self._batch = None

    def _send(self, held: Batch | None = None, later: bool = False) -> None:
        """Send `held`, or the rows the batch holds so far: every read of the tables they go to comes after. `later`:
        on PostgreSQL with the next statement sent or the COMMIT, whichever comes first (Batch.send), one round trip
        fewer: every statement that reads them comes after, and what needs the key of one of their rows sends them
        first (_keyed)."""
        if held is None and self._batch is not None:
            held, self._batch = self._batch, Batch()
        if held is not None and held.keys:
            made = held.send(self.connection, self._made if later else None, self._failed)
            if made is None:
                self._later = held.keys
            else:
                self._made(made)

    def _made(self, made: dict[tuple[str, str], int]) -> None:
        """The keys of the rows sent, once back."""
        self._later = {}
        for key, pk in made.items():
            self._rows[key] = cast(StoredResource, self._rows[key]).with_pk(pk)

    def _keyed(self, key: tuple[str, str]) -> None:
        """The rows held for later (_send) sent now if `key`'s is among them: what follows needs its row's key."""
        if key in self._later:
            driver.send_held(self.connection)

    def write(self, resource_type: str, resource_id: str, content: dict[str, Any] | None,
              warnings: list[dict[str, Any]], method: str, record_id: str | None = None,
              new: bool = False, references: list[tuple[str, str]] | None = None,
              drafted: Drafted | None = None, stamped: bool = False) -> StoredResource:
        """Store the next version (the first when new); `content` None deletes. Sets meta.versionId/lastUpdated.
        `new`: the id was just made by this server (a UUID), so no row can hold it: none is looked for.
        `references`: the content's, as fhirjson.rewritten found them (else its link rows walk it again); `drafted`:
        batch.draft(content, references), worked out before the unit began (every other writer waits for a unit).
        `stamped` (with `new`): `content` is versioned() as this first version already, made before the unit: only
        its meta.lastUpdated is set (restamped)."""
        key = (resource_type, resource_id)
        self._keyed(key)
        if self._batch is not None and key in self._batch.keys:  # its held rows go first: this version replaces
            self._send()  # their index rows
        row = None if new else self._row(resource_type, resource_id)
        self.matched.clear()  # what a search found may not match any more, or something new may
        now = utcnow()
        version = row.version + 1 if row else 1
        if content is not None:
            content = restamped(content, now) if stamped else versioned(content, resource_id, version, now)
        self.session.flush()  # what the ORM holds (e.g. a claim) goes first, as it did when this was ORM too
        pk = row.pk if row else UNSENT
        kept = record_id if row is None or record_id is not None else row.record_id
        values = {"version": version, "deleted": content is None, "last_updated": now, "content": content,
                  "warnings": warnings, "record_id": kept}
        text = joined(content, drafted.rest) if drafted is not None and content is not None else None
        stored = StoredResource(pk, resource_type, resource_id, version, content is None, now, content, warnings, kept,
                                method, text)
        self._rows[key] = stored
        wrote(self.session, stored, row is None or row.deleted)
        held = self._batch or Batch()
        held.write(pk, key, values, method, [] if content is None else drafted.rows if drafted is not None
                   else index_rows(resource_type, index(content, references)), text)
        if self._batch is None:
            self._send(held)
        if content is None and row is not None:
            self.session.execute(delete(ConditionalClaimRow).where(ConditionalClaimRow.resource_pk == pk))
        return cast(StoredResource, self._rows[key])

    def link_record(self, resource_type: str, resource_id: str, record_id: str) -> None:
        key = (resource_type, resource_id)
        row = self._row(*key)
        if row is None or row.record_id == record_id:
            return
        if self._batch is None or not self._batch.link(key, record_id):  # a row not sent yet takes it as it goes
            self._send()
            self._keyed(key)
            row = cast(StoredResource, self._row(*key))
            self.connection.execute(sql.SET_RECORD, {"the_pk": row.pk, "record_id": record_id})
        self._rows[key] = replace(row, record_id=record_id)

    # --- conditional create -----------------------------------------------------------------

    def claim(self, resource_type: str, criteria: str, resource_id: str) -> None:
        """Claim `criteria` for `resource_type/resource_id`; IntegrityError when another transaction holds it."""
        self._send()
        self._keyed((resource_type, resource_id))
        pk = cast(StoredResource, self._row(resource_type, resource_id)).pk
        self.session.add(ConditionalClaimRow(resource_type=resource_type, criteria=criteria, resource_pk=pk))
        self.session.flush()

    def release(self, resource_type: str, criteria: str) -> None:
        """Drop a claim whose resource no longer matches its criteria (changed or deleted since)."""
        self.session.execute(delete(ConditionalClaimRow).where(
            ConditionalClaimRow.resource_type == resource_type, ConditionalClaimRow.criteria == criteria))


def _as_is(exc: BaseException) -> BaseException:
    return exc
