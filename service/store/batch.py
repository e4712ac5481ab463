"""Rows of many resource writes sent together: a few statements for a whole transaction Bundle, not a few each.

A 1,000-entry transaction took 3,005 statements, three a resource (its row, its version, its index rows), and on
PostgreSQL each is a round trip: 2.08 s there against 1.05 s on SQLite. Held here until the unit of work sends
them (service/store/resources.Unit.batch), they take one multi-row INSERT a table.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, cast

from sqlalchemy import JSON, Connection, Dialect, Table, bindparam, delete, insert, update
from sqlalchemy.types import TypeDecorator

from service.fhirjson import dumps
from service.search.parameters import IndexValue, index
from service.store import driver, postgres
from service.store.models import ResourceRow, ResourceVersionRow, SearchIndexRow

RESOURCES = cast(Table, ResourceRow.__table__)
VERSIONS = cast(Table, ResourceVersionRow.__table__)
INDEX = cast(Table, SearchIndexRow.__table__)


class Serialised(TypeDecorator[str]):
    """A JSON column's value serialised already, by `serialise`: sent as that text. A resource's JSON went through
    json.dumps twice, once for its row and once for its version row (the JSON type serialises each value bound)."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        return None  # the text as it is (PostgreSQL casts the parameter to JSON, as for the JSON type)


#: what the JSON type does with a value: json.dumps (the engines set no json_serializer), None too ("null"); the same
#: text, with an encoder made once (fhirjson.dumps)
serialise = dumps
#: the elements a resource's stored JSON begins with, which its write sets (Unit.write): the rest can be serialised
#: before the write's unit of work (rest_of), and joined to them inside it (joined)
HEAD = ("resourceType", "id", "meta")


def rest_of(content: dict[str, Any]) -> str:
    """`content` without its HEAD elements, serialised: what `joined` completes."""
    return serialise({k: v for k, v in content.items() if k not in HEAD})


@dataclass(frozen=True)
class Drafted:
    """What a write of a content stores besides its row's columns, worked out before its unit of work: its index rows
    (index_rows) and its JSON text but for the elements the write sets (rest_of)."""

    rows: list[Indexed]
    rest: str


def draft(content: dict[str, Any], references: list[tuple[str, str]] | None = None, rest: str | None = None
          ) -> Drafted:
    """Unit.write's index rows and serialised rest of `content` (neither reads id or meta, which it sets); `rest`:
    rest_of(content), when known already."""
    return Drafted(index_rows(content["resourceType"], index(content, references)),
                   rest_of(content) if rest is None else rest)


def index_rows(resource_type: str, values: Iterable[IndexValue]) -> list[Indexed]:
    """The index rows of a resource's values, but for its key (INDEX_COLUMNS after the first): an IndexValue's fields
    are the columns that follow resource_type, in their order."""
    return [(resource_type, *value) for value in values]


def joined(content: dict[str, Any], rest: str) -> str:
    """serialise(content) for a `content` that is its HEAD elements, in that order, then the elements `rest` (rest_of)
    holds: the same text, without serialising those again."""
    head = (f'{{"resourceType": {serialise(content["resourceType"])}, "id": {serialise(content["id"])}, '
            f'"meta": {serialise(content["meta"])}')
    return f"{head}}}" if rest == "{}" else f"{head}, {rest[1:]}"


def spliced(bundle: dict[str, Any], texts: dict[int, str]) -> str:
    """serialise(bundle), a record's Bundle as the outbox holds it, with the texts of its entries' resources that
    `texts` holds (rest_of each, by entry) spliced in, not serialised again: the Bundle is serialised with each of
    them cut to its HEAD elements (which mapped resources begin with) and a mark, whose places their texts then take.
    A call of serialise per element spliced cost more than serialising it all (~70 a record). A mark found more often
    than put (a member of its name elsewhere: inside a string a quote is escaped) gives up."""
    entries: list[Any] = []
    holes: list[tuple[str, str]] = []
    for i, entry in enumerate(bundle["entry"]):
        text, resource = texts.get(i), entry.get("resource")
        if text is None or not isinstance(resource, dict) or tuple(islice(resource, len(HEAD))) != HEAD:
            entries.append(entry)
            continue
        entries.append({**entry, "resource": {**{k: resource[k] for k in HEAD}, _MARK: i}})
        holes.append((f"{_MARKED}{i}}}", "}" if text == "{}" else f", {text[1:]}"))
    out = serialise({**bundle, "entry": entries})
    if out.count(_MARKED) != len(holes):
        return serialise(bundle)
    parts: list[str] = []
    at = 0
    for mark, text in holes:  # in the text's order, each once
        found = out.index(mark, at)
        parts += (out[at:found], text)
        at = found + len(mark)
    parts.append(out[at:])
    return "".join(parts)


#: the member that marks where a resource's text goes (spliced), no FHIR element's name, and as serialised
_MARK = "\x00"
_MARKED = ', "\\u0000": '

#: the statements, built once: building `insert(...).values(...)` anew cost more than running it. A created row's
#: key comes back beside its (type, id), so each version and index row gets its own: in the order sent
#: (sort_by_parameter_order), SQLite's rows went one INSERT each, its RETURNING promising no order.
ADD_RESOURCES = insert(RESOURCES).values(content=bindparam("content", type_=Serialised())).returning(
    RESOURCES.c.pk, RESOURCES.c.resource_type, RESOURCES.c.id)
SET_RESOURCE = update(RESOURCES).where(RESOURCES.c.pk == bindparam("the_pk")).values(
    content=bindparam("content", type_=Serialised()))
ADD_VERSIONS = insert(VERSIONS).values(content=bindparam("content", type_=Serialised()))
DROP_INDEX = delete(INDEX).where(INDEX.c.resource_pk == bindparam("the_pk"))
#: the index rows' columns, in the order of the tuples held (the resource's key first)
INDEX_COLUMNS = ("resource_pk", "resource_type", "param", "system", "value", "low", "high", "path")
#: the key of a resource row not sent yet (keys start at 1)
UNSENT = 0

Row = dict[str, Any]
#: an index row without its resource's key: (resource_type, param, system, value, low, high, path)
Indexed = tuple[Any, ...]


@dataclass
class Batch:
    """What writes left to send: created rows (with the version and index rows waiting for their key), changed
    rows, and the index rows of changed resources to drop. A resource is in it at most once (Unit sends it first)."""

    created: list[tuple[Row, Row]] = field(default_factory=list)
    changed: list[Row] = field(default_factory=list)
    dropped: list[Row] = field(default_factory=list)
    versions: list[Row] = field(default_factory=list)
    #: each written resource's version row (which holds its key once known) and its index rows, in write order
    index: list[tuple[Row, list[Indexed]]] = field(default_factory=list)
    #: the resources held, each with its row's values (a created row's or a changed row's)
    keys: dict[tuple[str, str], Row] = field(default_factory=dict)

    def write(self, pk: int, key: tuple[str, str], values: Row, method: str, rows: list[Indexed],
              text: str | None = None) -> None:
        """A resource's next version: a new row when `pk` is UNSENT (its key comes when sent), else a change of the
        row `pk` (its index rows replace those it had). `values`: the row's columns; `rows`: its index rows
        (index_rows); `text`: the content serialised already (joined), if it is."""
        resource_type, resource_id = key
        # once, for the row and its version
        values = {**values, "content": serialise(values["content"]) if text is None else text}
        version = {"resource_pk": pk, "resource_type": resource_type, "id": resource_id, "method": method,
                   **{k: values[k] for k in ("version", "deleted", "last_updated", "content")}}
        self.versions.append(version)
        self.index.append((version, rows))
        if pk == UNSENT:
            self.keys[key] = {"resource_type": resource_type, "id": resource_id, **values}
            self.created.append((self.keys[key], version))
        else:
            self.keys[key] = {"the_pk": pk, **values}
            self.changed.append(self.keys[key])
            self.dropped.append({"the_pk": pk})

    def link(self, key: tuple[str, str], record_id: str) -> bool:
        """Name the clinic record of a resource held here, in the row still to be sent; False if none is held."""
        row = self.keys.get(key)
        if row is None:
            return False
        row["record_id"] = record_id
        return True

    def send(self, connection: Connection, then: postgres.Made | None = None,
             failed: Callable[[BaseException], BaseException] = lambda exc: exc) -> dict[tuple[str, str], int] | None:
        """Every held row, in an order the foreign keys accept; the keys of the created rows by (type, id). On
        PostgreSQL one statement (store/postgres.py), each a round trip: with `then`, sent with the next statement
        or the COMMIT where it can (None; send_batch); on SQLite a statement a table (send_each)."""
        if connection.dialect.name == "postgresql":
            index = [(version["resource_pk"], version["id"], *row) for version, rows in self.index for row in rows]
            return postgres.send_batch(connection, self.created, self.changed, self.dropped, self.versions, index,
                                       then, failed)
        return self.send_each(connection)

    def send_each(self, connection: Connection) -> dict[tuple[str, str], int]:
        """send(), a statement a table (a few for a whole transaction Bundle): SQLite's way, where a statement is
        no round trip."""
        made: dict[tuple[str, str], int] = {}
        if self.created:
            # on SQLite's own cursor (store/driver.py): through Core each statement cost ~150 µs more
            rows = [row for row, _ in self.created]
            back = driver.insert_many(connection, RESOURCES, rows, ("content",), ("pk", "resource_type", "id"))
            made = {(t, i): pk for pk, t, i in (back if back is not None else connection.execute(ADD_RESOURCES, rows))}
            for row, version in self.created:
                version["resource_pk"] = made[row["resource_type"], row["id"]]
        for statement, rows in ((SET_RESOURCE, self.changed), (DROP_INDEX, self.dropped)):
            if rows:
                connection.execute(statement, rows)
        if self.versions and driver.insert_many(connection, VERSIONS, self.versions, ("content",)) is None:
            connection.execute(ADD_VERSIONS, self.versions)
        index = [(version["resource_pk"], *row) for version, rows in self.index for row in rows]
        if index:
            add_index(connection, index)
        return made


def add_index(connection: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Index rows (in INDEX_COLUMNS' order) on the driver's cursor: through SQLAlchemy's statement each row's every
    value was processed on its own (~113 rows a clinic record). Their times go as the DateTime type binds them."""
    dialect = connection.dialect
    time = driver.binder(INDEX.c.low.type, dialect)
    if time is not None:
        rows = [row if row[5] is None and row[6] is None else (
            *row[:5], row[5] if row[5] is None else time(row[5]), row[6] if row[6] is None else time(row[6]),
            *row[7:]) for row in rows]
    # on SQLite's own cursor: through exec_driver_sql the statement cost ~50 µs more, in the writers' turn
    if not driver.many(connection, ADD_INDEX_SQL["?"], rows):
        connection.exec_driver_sql(ADD_INDEX_SQL["?" if dialect.paramstyle == "qmark" else "%s"], rows)


#: by the driver's placeholder (sqlite3's qmark, psycopg's format); built from the constants above, no value in it
ADD_INDEX_SQL = {mark: f"INSERT INTO {INDEX.name} ({', '.join(INDEX_COLUMNS)}) "  # noqa: S608
                       f"VALUES ({', '.join([mark] * len(INDEX_COLUMNS))})" for mark in ("?", "%s")}
