"""The statements the resource store sends most, each built once (building one cost more than SQLite's lookup):
reads by key, by token and by reference, the prefetch of many keys, and what a search page reads."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import Select, and_, bindparam, or_, select, update

from service.search.query import Query
from service.store.batch import INDEX, RESOURCES
from service.store.pages import named_patient

T = TypeVar("T")

#: the current resources of a type holding a token `system|value` under a parameter, oldest first: a conditional
#: create's or update's `identifier=system|value`, as the general search would ask it (_condition, _match), built
#: once; building the general statement cost 1.1-1.5 ms a search, ten times running it
TOKEN_MATCH = select(RESOURCES).where(
    RESOURCES.c.resource_type == bindparam("resource_type"), RESOURCES.c.deleted.is_(False),
    RESOURCES.c.pk.in_(select(INDEX.c.resource_pk).where(
        INDEX.c.resource_type == bindparam("resource_type"), INDEX.c.param == bindparam("param"),
        INDEX.c.value == bindparam("value"), INDEX.c.system == bindparam("system")))
).order_by(RESOURCES.c.pk.asc()).limit(bindparam("count"))
SET_RECORD = update(RESOURCES).where(RESOURCES.c.pk == bindparam("the_pk"))
#: the reads a write makes, built once too (their construction cost more than SQLite's lookup)
GET_ROW = select(RESOURCES).where(RESOURCES.c.resource_type == bindparam("the_type"),
                                  RESOURCES.c.id == bindparam("the_id"))


def _read_row() -> Select[Any]:
    """GET_ROW, with `named` (pages.named_patient): what the answer's audit event hashes (web/auth.py) then needs no
    statement of its own. A join per reference, each with a prefix check, cost PostgreSQL more than the statement it
    saved (370 against 230 µs a read); this, 190."""
    return select(RESOURCES, named_patient(RESOURCES).label("named")).where(
        RESOURCES.c.resource_type == bindparam("the_type"), RESOURCES.c.id == bindparam("the_id"))


READ_ROW = _read_row()
#: current resources of a type whose reference parameter names one of some keys, in the order they were made
REFERRING = select(RESOURCES).where(
    RESOURCES.c.resource_type == bindparam("source"), RESOURCES.c.deleted.is_(False),
    RESOURCES.c.pk.in_(select(INDEX.c.resource_pk).where(
        INDEX.c.resource_type == bindparam("source"), INDEX.c.param == bindparam("param"),
        INDEX.c.value.in_(bindparam("keys", expanding=True))))).order_by(RESOURCES.c.pk).limit(bindparam("limit"))
#: (type, id) pairs looked up together, at most this many a statement
PREFETCH_CHUNK = 32


def shown(query: Query) -> int:
    """The rows a page reads: one more than it shows, unless counted (whether another page follows, and so the total
    of the last)."""
    return max(query.count, 1) if query.total else query.count + 1 if query.total is None else query.count


def uncounted(query: Query, rows: list[T]) -> tuple[list[T], int | None]:
    """The page of `rows` (read one beyond it unless `_total=none`), and its total if it is the last page."""
    last = query.total is None and len(rows) <= query.count and (bool(rows) or not query.offset)
    return rows[:query.count], query.offset + len(rows) if last else None


def one_token(query: Query) -> bool:
    """The query is TOKEN_MATCH's: one token criterion, one `system|value` (both given), no modifier, no chain; no
    total, sort or offset."""
    if query.total or query.sort or query.offset or len(query.criteria) != 1:
        return False
    criterion = query.criteria[0]
    if criterion.param.kind != "token" or criterion.modifier or criterion.chain or len(criterion.matches) != 1:
        return False
    match = criterion.matches[0]
    return bool(match.system and match.system_given and match.value is not None and criterion.param.name != "_id")


def token_params(query: Query) -> dict[str, Any]:
    """TOKEN_MATCH's parameters for a query that is its (one_token)."""
    criterion = query.criteria[0]
    return {"resource_type": query.resource_type, "param": criterion.param.name, "value": criterion.matches[0].value,
            "system": criterion.matches[0].system, "count": shown(query)}


@lru_cache(maxsize=8)
def token_keys(size: int) -> Select[Any]:
    """The current resources holding the tokens of `size` TOKEN_MATCH searches (bound as t0, p0, v0, s0, t1, …: its
    type, param, value and system) by id, version and deleted, after each index row's type, param, value and system
    (which search found it), in the order they were made: whether the searches would still find what they found, in
    one statement where each was one (a clinic record's people, in the writers' turn). A resource holding the same
    token twice comes twice. At most `cap` rows: a token many resources hold (a duplicated MRN) is not read whole."""
    tokens = select(INDEX.c.resource_type, INDEX.c.param, INDEX.c.value, INDEX.c.system, RESOURCES.c.id,
                    RESOURCES.c.version, RESOURCES.c.deleted)
    return tokens.join(RESOURCES, RESOURCES.c.pk == INDEX.c.resource_pk).where(
        RESOURCES.c.resource_type == INDEX.c.resource_type, RESOURCES.c.deleted.is_(False),
        or_(*(and_(INDEX.c.resource_type == bindparam(f"t{n}"), INDEX.c.param == bindparam(f"p{n}"),
                   INDEX.c.value == bindparam(f"v{n}"), INDEX.c.system == bindparam(f"s{n}")) for n in range(size)))
    ).order_by(RESOURCES.c.pk).limit(bindparam("cap"))


def bucket(count: int) -> int:
    """The size of the prefetch statement for `count` pairs: the next power of two (statements of 2, 4, … 32)."""
    size = 2
    while size < count:
        size *= 2
    return size


@lru_cache(maxsize=64)
def versions_sql(mark: str, size: int) -> str:
    """What Unit.adopt reads of `size` (type, id) pairs, in the driver's SQL with its placeholder `mark`: an OR of the
    pairs, as prefetch_statement's."""
    where = " OR ".join([f"(resource_type = {mark} AND id = {mark})"] * size)
    return f"SELECT resource_type, id, pk, version, record_id FROM {RESOURCES.name} WHERE {where}"  # noqa: S608 - constants


@lru_cache(maxsize=8)
def prefetch_statement(size: int) -> Any:
    """The rows of `size` (type, id) pairs, bound as t0, i0, t1, i1, …: an OR of the pairs, so SQLite looks each up
    in the unique index (a row-value IN scanned it)."""
    return select(RESOURCES).where(or_(*(and_(RESOURCES.c.resource_type == bindparam(f"t{n}"),
                                              RESOURCES.c.id == bindparam(f"i{n}")) for n in range(size))))
