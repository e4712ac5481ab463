"""A search's page statement, built once for every query of its shape and run with each query's values."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from typing import Any

from sqlalchemy import JSON, Select, Subquery, Text, bindparam, cast, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.functions import FunctionElement

from service.search.query import Query
from service.store.batch import RESOURCES
from service.store.conditions import condition, date_key, driven, drives, shape, values
from service.store.models import ResourceRow, SearchIndexRow

#: statements kept, the least recently used dropped first: a served search's shapes are few (the bench's two)
CACHED = 256
#: a page's bodies, joined to its keys
BODY = RESOURCES.alias("body")
#: the references a page of texts reads beside each text (StoredText): a JSON path each, cheaper in the database than
#: the text parsed again in Python (0.4 ms for a page of 10 administrations)
REFERENCES = ("subject", "patient")


@dataclass(frozen=True)
class Page:
    """A page statement: `keyed` selects the page's rows (with `total` when counted) in order; `texts` their type, id,
    stored JSON `text` and REFERENCES instead (with `total`); `matching` the keys of every match (the count of a page
    past the end)."""

    keyed: Select[Any]
    texts: Select[Any]
    matching: Select[Any]


_built: OrderedDict[tuple[Any, ...], Page] = OrderedDict()
_lock = Lock()


def page(query: Query, shown: int) -> tuple[Page, dict[str, Any]]:
    """The statement of `query`'s page of `shown` rows, and its parameters.

    Building it cost more than running it (a served search: 1.1 ms of SQLAlchemy constructs and their cache key,
    against 0.3 ms in SQLite): a statement is built once for each shape of query (its type, criteria without
    their values, sort, whether counted) and reused with the values of each query (conditions.values)."""
    key = (query.resource_type, tuple(shape(c) for c in query.criteria), tuple(query.sort), bool(query.total))
    params: dict[str, Any] = {"page_offset": query.offset, "page_rows": shown}
    for i, criterion in enumerate(query.criteria):
        params |= values(criterion, f"c{i}")
    with _lock:
        found = _built.get(key)
        if found is not None:
            _built.move_to_end(key)
            return found, params
    found = _build(query)
    with _lock:
        _built[key] = found
        while len(_built) > CACHED:
            _built.popitem(last=False)
    return found, params


def _build(query: Query) -> Page:
    """The total is a window count over the matching keys only, and the page's bodies are joined to the page's keys
    afterwards in the same statement: a window count beside each selected body made the database build every
    matching row with its JSON (the bench's searches, 3,122 matches of 1.7 KB: 62 ms, against 13 ms)."""
    live = (ResourceRow.resource_type == query.resource_type, ResourceRow.deleted.is_(False))
    matching = select(ResourceRow.pk).where(*live)
    for i, criterion in enumerate(query.criteria):
        matching = matching.where(condition(query.resource_type, criterion, f"c{i}"))
    lead = next((i for i, c in enumerate(query.criteria) if drives(c)), None)
    if lead is not None and not query.sort and not query.total:
        return Page(*_driven(query, lead), select(func.count()).select_from(matching.subquery()))
    sort: list[tuple[Any, bool]] = [
        (ResourceRow.last_updated if name == "_lastUpdated" else
         ResourceRow.id if name == "_id" else date_key(query.resource_type, descending), descending)
        for name, descending in query.sort]
    # the sort keys travel with the keys (s0, s1, …), so that the page keeps its order once joined to its bodies
    keys = matching.add_columns(*(column.label(f"s{i}") for i, (column, _) in enumerate(sort)))
    if query.total:
        keys = keys.add_columns(func.count().over().label("total"))
    order = [column.desc() if descending else column.asc() for column, descending in sort]
    rows = keys.order_by(*order, ResourceRow.pk.asc()).offset(bindparam("page_offset")).limit(
        bindparam("page_rows")).subquery()
    again = [rows.c[f"s{i}"].desc() if descending else rows.c[f"s{i}"].asc() for i, (_, descending) in enumerate(sort)]
    return Page(*_bodies(rows, [*again, rows.c.pk.asc()], bool(query.total)),
                select(func.count()).select_from(matching.subquery()))


def _driven(query: Query, lead: int) -> tuple[Select[Any], Select[Any]]:
    """The page in key order, its keys read off the index rows of one criterion that come in key order
    (conditions.drives), the other criteria checked on each, until the page is full. Asked for the keys of every
    match first (`pk IN (…)`), SQLite gathered all of them before it took the page's: the bench's searches, ~2,650
    matches, took 0.7-0.8 ms in SQLite, 0.02 ms this way; PostgreSQL's plan was already a merge that stops early.
    DISTINCT: a resource may hold the value twice (two identifiers alike)."""
    driver = aliased(SearchIndexRow, name="driver")
    keys = select(driver.resource_pk.label("pk")).distinct().join(
        ResourceRow, ResourceRow.pk == driver.resource_pk).where(
        ResourceRow.resource_type == query.resource_type, ResourceRow.deleted.is_(False),
        driven(query.resource_type, query.criteria[lead], f"c{lead}", driver),
        *(condition(query.resource_type, c, f"c{i}") for i, c in enumerate(query.criteria) if i != lead))
    rows = keys.order_by(driver.resource_pk.asc()).offset(bindparam("page_offset")).limit(
        bindparam("page_rows")).subquery()
    return _bodies(rows, [rows.c.pk.asc()], False)


class _Pair(FunctionElement[Any]):
    """A JSON array of two values: json_build_array on PostgreSQL, json_array on SQLite."""

    type = JSON()
    inherit_cache = True


@compiles(_Pair)
def _json_array(element: _Pair, compiler: Any, **kw: Any) -> str:
    return f"json_array({compiler.process(element.clauses, **kw)})"


@compiles(_Pair, "postgresql")
def _json_build_array(element: _Pair, compiler: Any, **kw: Any) -> str:
    return f"json_build_array({compiler.process(element.clauses, **kw)})"


def named_patient(body: Any) -> Any:
    """[id, identifier list] of the Patient that `body`'s subject reference (else its patient's, REFERENCES) names as
    `Patient/<id>`, found by key, or NULL: a scalar subquery of one JSON path (the first present). A reference of
    another type may find a Patient whose id ends it: what is found is that Patient's, kept by its own id, which such
    a reference is not (the audit asks for the ids of `Patient/` references)."""
    reference = func.coalesce(*(body.c.content[(name, "reference")].as_string() for name in REFERENCES))
    patient = RESOURCES.alias("named")
    return select(_Pair(patient.c.id, patient.c.content["identifier"])).where(
        patient.c.resource_type == "Patient", patient.c.id == func.substr(reference, 9)).scalar_subquery()


def _bodies(rows: Subquery, order: list[Any], counted: bool) -> tuple[Select[Any], Select[Any]]:
    """The rows of the page whose keys `rows` holds, in `order`, and their stored JSON texts (Page)."""
    def of(*columns: Any) -> Select[Any]:
        return select(*columns, *([rows.c.total] if counted else [])).join_from(
            BODY, rows, BODY.c.pk == rows.c.pk).order_by(*order)

    return of(BODY), of(BODY.c.resource_type, BODY.c.id, cast(BODY.c.content, Text).label("text"),
                        *(BODY.c.content[(name, "reference")].as_string().label(name) for name in REFERENCES),
                        named_patient(BODY).label("named"))
