"""A unit's searches and history (mixed into store/resources.Unit): what reads many rows at once, as against the
keyed reads and the writes of resources.py."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, func, select, text
from sqlalchemy.orm import Session

from service.search.parameters import params_of
from service.search.query import Query
from service.store import driver
from service.store import statements as sql
from service.store.models import LINK_ROWS, ResourceRow, ResourceVersionRow, SearchIndexRow
from service.store.pages import page
from service.store.stored import StoredResource, StoredText

T = TypeVar("T")


class Searches:
    if TYPE_CHECKING:  # what resources.Unit gives them
        @property
        def session(self) -> Session: ...

        @property
        def connection(self) -> Connection: ...

        def _send(self) -> None: ...

        def _row(self, resource_type: str, resource_id: str) -> StoredResource | None: ...

        def _current(self, statement: Any, params: dict[str, Any]) -> list[StoredResource]: ...

        def named_patients(self) -> dict[str, Any]: ...

    def search(self, query: Query) -> tuple[list[StoredResource], int | None]:
        """One page and how many match (query.total: counted, none, or the default, only when this page is the
        last and shows it): one query (store/pages.py), a second only for a counted page past the end, where no row
        carries the total. Rows as plain SQL (Core), as the reads and writes are: the ORM's loading of each row cost
        more than SQLite's finding it."""
        self._send()
        if sql.one_token(query):
            return sql.uncounted(query, self._current(sql.TOKEN_MATCH, sql.token_params(query)))
        return self._page(query, False, StoredResource.of_columns)

    def found_keys(self, queries: list[Query]) -> list[list[tuple[str, int, bool]] | None]:
        """For each of `queries`, (id, version, deleted) of what search(query) finds on its first page, the resources
        not read, those of all in one statement (sql.token_keys); None for a query that is not TOKEN_MATCH's."""
        self._send()
        asked = {n: sql.token_params(query) for n, query in enumerate(queries) if sql.one_token(query)}
        if not asked:
            return [None] * len(queries)
        searches: dict[tuple[str, str, str, str], list[int]] = {}
        for n, params in asked.items():
            searches.setdefault((params["resource_type"], params["param"], params["value"], params["system"]),
                                []).append(n)
        tokens = list(searches)
        size = sql.bucket(len(tokens))  # the last search repeated up to the statement's size: the same rows
        tokens += [tokens[-1]] * (size - len(tokens))
        # twice the rows the pages show: enough for each resource holding its token twice; a statement that fills it
        # may have left a search's rows out, and each is then asked alone, as many as its page shows
        cap = 2 * sum(one["count"] for one in asked.values())
        params = {f"{letter}{n}": part for n, token in enumerate(tokens)
                  for letter, part in zip("tpvs", token, strict=True)} | {"cap": cap}
        connection, statement = self.connection, sql.token_keys(size)
        rows = driver.select(connection, statement, params)
        if rows is None:
            rows = [tuple(row) for row in connection.execute(statement, params)]
        if len(rows) >= cap:
            return [[(r.id, r.version, r.deleted) for r in self._current(sql.TOKEN_MATCH, asked[n])] if n in asked
                    else None for n in range(len(queries))]
        found: dict[int, list[tuple[str, int, bool]]] = {n: [] for n in asked}
        for resource_type, param, value, system, i, v, d in rows:
            for n in searches[resource_type, param, value, system]:
                found[n].append((i, v, bool(d)))
        # a resource once (a join row a token it holds), at most as many as the page shows, as search's
        return [list(dict.fromkeys(found[n]))[:asked[n]["count"]] if n in asked else None for n in range(len(queries))]

    def search_texts(self, query: Query) -> tuple[list[StoredText], int | None]:
        """search(), each resource as its stored JSON text: for an answer that shows the resources as stored, which
        then need not be parsed and serialised again (facade/paging.py)."""
        self._send()
        named = self.named_patients()

        def made(row: Any) -> StoredText:
            note_named(named, row.named)  # for the answer's audit event, as read notes them
            return StoredText(row.resource_type, row.id, row.text, _text(row.subject), _text(row.patient))

        return self._page(query, True, made)

    def _page(self, query: Query, texts: bool, made: Callable[[Any], T]) -> tuple[list[T], int | None]:
        statement, params = page(query, sql.shown(query))
        connection = self.connection
        rows = connection.execute(statement.texts if texts else statement.keyed, params).all()
        if not query.total:
            return sql.uncounted(query, [made(r) for r in rows])
        total = int(rows[0].total) if rows else 0
        if not rows and query.offset > 0:
            total = connection.execute(statement.matching, params).scalar() or 0
        return [made(r) for r in rows[:query.count]], total

    def by_keys(self, keys: list[str]) -> list[StoredResource]:
        """Current, not deleted resources named `Type/id`."""
        out = []
        for key in dict.fromkeys(keys):
            resource_type, _, resource_id = key.partition("/")
            row = self._row(resource_type, resource_id)
            if row is not None and not row.deleted:
                out.append(row)
        return out

    def referring(self, source: str, param: str, keys: list[str], limit: int = 1000) -> list[StoredResource]:
        """_revinclude: current `source` resources whose reference parameter `param` names one of `keys`."""
        known = params_of(source).get(param)
        if known is not None and known.rows:  # `patient`: the `subject` rows, those naming a Patient
            keys, param = [k for k in keys if k.partition("/")[0] in known.targets], known.rows
        if not keys:
            return []
        self._send()
        rows = self.connection.execute(sql.REFERRING, {"source": source, "param": param, "keys": keys,
                                                             "limit": limit})
        return [StoredResource.of_columns(r) for r in rows]

    def referrers(self, keys: list[str], limit: int = 20) -> list[tuple[str, str, str]]:
        """(referrer `Type/id`, the path it refers at, the `Type/id` referred to) of current resources that refer
        to any of `keys` (parameters.links: the index rows with a path), Provenance left out: it records history, which
        outlives a delete."""
        self._send()
        rows = self.session.execute(
            select(ResourceRow.resource_type, ResourceRow.id, SearchIndexRow.path, SearchIndexRow.value)
            .join(ResourceRow, ResourceRow.pk == SearchIndexRow.resource_pk)
            .where(text(LINK_ROWS), SearchIndexRow.value.in_(keys), ResourceRow.deleted.is_(False),
                   ResourceRow.resource_type != "Provenance")
            .order_by(SearchIndexRow.pk).limit(limit))
        return [(f"{t}/{i}", path or "", value or "") for t, i, path, value in rows]

    def history(self, resource_type: str | None, resource_id: str | None, since: datetime | None,
                count: int, offset: int) -> tuple[list[StoredResource], int]:
        self._send()
        stmt = select(ResourceVersionRow)
        if resource_type is not None:
            stmt = stmt.where(ResourceVersionRow.resource_type == resource_type)
        if resource_id is not None:
            stmt = stmt.where(ResourceVersionRow.id == resource_id)
        if since is not None:
            stmt = stmt.where(ResourceVersionRow.last_updated >= since)
        total = self.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = self.session.scalars(stmt.order_by(ResourceVersionRow.pk.desc()).offset(offset).limit(count))
        return [StoredResource.of_version(r) for r in rows], total


def note_named(named: dict[str, Any], found: Any) -> None:
    """Note a row's `named` (pages.named_patient) in `named` (Unit.named_patients)."""
    if isinstance(found, list) and len(found) == 2:
        named[found[0]] = found[1]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
