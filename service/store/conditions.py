"""Search criteria as SQL conditions over the search index: what `Unit.search` filters and sorts by."""
from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, exists, func, literal, or_, select, true
from sqlalchemy.orm import aliased

from service.params import EARLIEST, LATEST
from service.search.query import Criterion, Match
from service.store.models import ResourceRow, SearchIndexRow

#: the resource row a condition is about: the searched one, or one across a chain (an alias)
Row = Any


def _indexed(resource_type: str, param: str, *conditions: ColumnElement[bool], row: Row = ResourceRow
             ) -> ColumnElement[bool]:
    """`row` has an index row of `param` that meets `conditions`: its key among the keys the index finds (an EXISTS
    probed the index once per candidate row, so a conditional write's `identifier=` match read every resource of its
    type: 84 ms among 3,740 MedicationAdministrations, against 0.5 ms this way). Uncorrelated: the index's keys."""
    found: ColumnElement[bool] = row.pk.in_(select(SearchIndexRow.resource_pk).where(
        SearchIndexRow.resource_type == resource_type, SearchIndexRow.param == param, *conditions).correlate(None))
    return found


def condition(resource_type: str, criterion: Criterion, name: str, row: Row = ResourceRow) -> ColumnElement[bool]:
    """One condition per criterion: its alternatives OR'd inside one index lookup (one EXISTS each made 300
    alternatives cost 5 s and 990 overflow SQLite's expression depth).

    Each value is a parameter named after where it sits (`name`, the criterion's, then its alternative's number and
    the field: values()), holding its value: the statement runs as built, or, built once for queries of the same
    shape, with another query's values() (store/pages.py)."""
    param = criterion.param
    if criterion.chain:
        found: ColumnElement[bool] = or_(*[(_referred_by if criterion.reverse else _refers_to)(
            resource_type, param.stored, other, inner, f"{name}_{k}", row)
            for k, (other, inner) in enumerate(criterion.chain)])
    elif criterion.modifier == "missing":  # search.html#modifiers: true, no value; false, some value
        present = _indexed(resource_type, param.stored, *_targeted(criterion), row=row)
        found = ~present if criterion.matches[0].value == "true" else present
    elif param.name == "_id":
        found = row.id.in_([bindparam(f"{name}_{j}v", m.value) for j, m in enumerate(criterion.matches)])
    elif param.name == "_lastUpdated":
        found = or_(*[_date_compare(row.last_updated, row.last_updated, m, f"{name}_{j}")
                      for j, m in enumerate(criterion.matches)])
    else:
        found = _indexed(resource_type, param.stored, or_(*[_match(criterion, m, f"{name}_{j}")
                                                          for j, m in enumerate(criterion.matches)]), row=row)
    return ~found if criterion.modifier == "not" and param.kind == "token" else found


def drives(criterion: Criterion) -> bool:
    """Whether the index rows that meet `criterion` come in key order (one value, equal: a token with its code, or a
    reference), so that they can give a page's keys in order, stopping at the page's end (store/pages.py)."""
    return (not criterion.chain and criterion.modifier is None and len(criterion.matches) == 1
            and criterion.param.kind in ("token", "reference") and criterion.param.name not in ("_id", "_lastUpdated")
            and criterion.matches[0].value is not None)


def driven(resource_type: str, criterion: Criterion, name: str, index: Any) -> ColumnElement[bool]:
    """The rows of `index` (an alias of the search index) that meet `criterion`, which drives() a page: the same
    parameters as condition(criterion, name)."""
    found: ColumnElement[bool] = and_(index.resource_type == resource_type, index.param == criterion.param.stored,
                                      _match(criterion, criterion.matches[0], f"{name}_0", index))
    return found


def _targeted(criterion: Criterion) -> list[ColumnElement[bool]]:
    """A parameter answered from another's rows (Param.rows) reads those that point at its targets only; a value
    searched for names one of them already (query.py)."""
    param = criterion.param
    if not param.rows:
        return []
    return [or_(*[SearchIndexRow.value.like(f"{target}/%") for target in param.targets])]


def values(criterion: Criterion, name: str) -> dict[str, Any]:
    """The parameters of condition(criterion, name): each alternative's fields under the names it gives them."""
    out: dict[str, Any] = {}
    for j, m in enumerate(criterion.matches):
        at = f"{name}_{j}"
        out |= {f"{at}v": m.value, f"{at}s": m.system or "", f"{at}p": _pattern(criterion, m), f"{at}lo": m.low,
                f"{at}hi": m.high}
    for k, (_other, inner) in enumerate(criterion.chain):
        out |= values(inner, f"{name}_{k}")
    return out


def shape(criterion: Criterion) -> tuple[Any, ...]:
    """What condition() builds for `criterion` apart from its values: criteria of one shape differ in values()
    only. Everything a branch of condition() or _match() looks at is in it, besides the values themselves."""
    return (criterion.param.name, criterion.param.kind, criterion.modifier, criterion.reverse,
            tuple((m.value is None, m.value if criterion.modifier == "missing" else None, m.system_given,
                   m.system is None, m.prefix, m.low is None, m.high is None) for m in criterion.matches),
            tuple((other, shape(inner)) for other, inner in criterion.chain))


def _refers_to(resource_type: str, param: str, target: str, inner: Criterion, name: str, row: Row
               ) -> ColumnElement[bool]:
    """A chain: `row`'s reference `param` names a current `target` resource that meets `inner`."""
    other = aliased(ResourceRow)
    link = aliased(SearchIndexRow)  # not the inner criterion's own index lookup (it would correlate to this)
    named = select(literal(f"{target}/") + other.id).where(
        other.resource_type == target, other.deleted.is_(False), condition(target, inner, name, other))
    return exists().where(link.resource_pk == row.pk, link.resource_type == resource_type, link.param == param,
                          link.value.in_(named))


def _referred_by(resource_type: str, param: str, source: str, inner: Criterion, name: str, row: Row
                 ) -> ColumnElement[bool]:
    """`_has`: a current `source` resource that meets `inner` refers to `row` through its `param`."""
    other = aliased(ResourceRow)
    link = aliased(SearchIndexRow)
    return exists().where(other.resource_type == source, other.deleted.is_(False), link.resource_pk == other.pk,
                          link.resource_type == source, link.param == param,
                          link.value == literal(f"{resource_type}/") + row.id, condition(source, inner, name, other))


def _match(criterion: Criterion, m: Match, at: str, index: Any = SearchIndexRow) -> ColumnElement[bool]:
    """What one alternative asks of an index row (of `index`, the index or an alias) of the criterion's parameter (its
    values named `at`…)."""
    param = criterion.param
    if param.kind == "token":
        conditions = []
        if m.value is not None:
            conditions.append(index.value == bindparam(f"{at}v", m.value))
        if m.system_given:
            conditions.append(index.system == bindparam(f"{at}s", m.system) if m.system
                              else index.system.is_(None))
        return and_(true(), *conditions)
    found: ColumnElement[bool]
    if param.kind == "reference":
        found = index.value == bindparam(f"{at}v", m.value)
    elif param.kind == "string" and criterion.modifier == "exact":  # case and accents as written (search.html#string)
        found = index.system == bindparam(f"{at}s", m.system or "")
    elif param.kind == "string":
        found = index.value.like(bindparam(f"{at}p", _pattern(criterion, m)), escape="\\")
    else:
        found = _date_compare(index.low, index.high, m, at)
    return found


def _pattern(criterion: Criterion, m: Match) -> str:
    """A string alternative's LIKE pattern: its text escaped, then a prefix (the default) or :contains."""
    text = (m.value or "").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{text}%" if criterion.modifier == "contains" else f"{text}%"


def _date_compare(low: Any, high: Any, m: Match, at: str) -> Any:
    """R4 date search: eq — the value's range contains the resource's; lt/le/gt/ge — the ranges overlap that way."""
    if m.low is None or m.high is None:  # the parser gives every date match both ends
        raise ValueError("a date match without its range")
    start, end = bindparam(f"{at}lo", m.low, type_=low.type), bindparam(f"{at}hi", m.high, type_=high.type)
    if m.prefix == "eq":
        return and_(low >= start, high <= end)
    if m.prefix == "lt":
        return low < start
    if m.prefix == "le":
        return low <= end
    if m.prefix == "gt":
        return high > end
    return high >= start  # ge


def date_key(resource_type: str, descending: bool) -> Any:
    """The resource's earliest indexed `date`-kind value, for _sort=date (missing sorts last)."""
    from service.search.parameters import PARAMS

    names = [p.name for p in PARAMS.get(resource_type, {}).values() if p.kind == "date"]
    preferred = "date" if "date" in names else (names[0] if names else "date")
    agg = func.max(SearchIndexRow.high) if descending else func.min(SearchIndexRow.low)
    key = select(agg).where(SearchIndexRow.resource_pk == ResourceRow.pk, SearchIndexRow.param == preferred)
    return func.coalesce(key.scalar_subquery(), EARLIEST if descending else LATEST)
