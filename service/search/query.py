"""Search requests: query parameters parsed into criteria, with errors that name the parameter.

    parse(resource_type, [(name, value), ...], lenient) -> Query

Values of one parameter separated by commas are alternatives (OR); the same parameter repeated,
or different parameters, must all hold (AND). Token `system|code`, `|code`, `system|`, `code`;
date with a prefix `eq lt le gt ge` (default eq); reference `Type/id` or a bare id; string
(prefix, case and accent insensitive; `:exact`, `:contains`); `:missing=true|false` on any; chains and `_has`
across one reference (chains.py). Result parameters: `_count`, `_offset`, `_sort`, `_include`, `_revinclude`,
`_total`, `_summary`, `_elements` (the facade cuts the resources: facade/subsets.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from service.errors import BadRequest, Issue
from service.fhirjson import reference_key
from service.params import bad, date_range, parse_integer
from service.search import chains, limits
from service.search.parameters import RESULT, Param, cut, normalise, params_of

DEFAULT_COUNT = 20
MAX_COUNT = 200
#: Deeper pages cost the database a scan of every row before them; past this, the last page allowed is served.
MAX_OFFSET = 100_000
DATE_PREFIXES = ("eq", "ne", "lt", "le", "gt", "ge")
SORTABLE = {"_lastUpdated", "date", "_id"}


@dataclass(frozen=True)
class Match:
    """One alternative of a criterion."""

    system: str | None = None
    system_given: bool = False     # `|code` means: no system
    value: str | None = None
    prefix: str = "eq"
    low: datetime | None = None
    high: datetime | None = None


@dataclass(frozen=True)
class Criterion:
    """`chain`: across the reference parameter `param`, (the type at the other end, what it must meet);
    `reverse`: the other end refers to this resource (`_has`), instead of this resource to it."""

    param: Param
    modifier: str | None
    matches: tuple[Match, ...]
    chain: tuple[tuple[str, Criterion], ...] = ()
    reverse: bool = False


@dataclass
class Query:
    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=list)   # (param, descending)
    include: list[tuple[str, str, str | None]] = field(default_factory=list)  # (type, param, target)
    #: Bundle.total: True counts every match (`_total=accurate|estimate`, `_summary=count`, `_count=0`); False gives
    #: none (`_total=none`); None, the default, gives it only when the page shows it for free: the last page, which
    #: ends before `_count` (a page fetches one row more than it shows, to know). R4 search.html#total: counting
    #: may be onerous, so the client says what it needs, and Bundle.total is optional; HAPI JPA (its default total
    #: mode) and Medplum count only when asked. A large result's count cost most of a served search.
    total: bool | None = None
    ignored: list[str] = field(default_factory=list)             # lenient: what was left out
    revinclude: list[tuple[str, str, str | None]] = field(default_factory=list)  # (type, param, target)
    summary: str | None = None                                   # _summary: true, text, data, count, false
    elements: list[str] = field(default_factory=list)            # _elements


def parse(resource_type: str, items: list[tuple[str, str]], lenient: bool = False) -> Query:
    limits.check(items)  # before any parsing: 400 naming the limit, lenient or not
    query = Query(resource_type)
    known = params_of(resource_type)
    problems: list[Issue] = []
    for raw_name, raw_value in items:
        name, _, modifier = raw_name.partition(":")
        try:
            if "\x00" in raw_name + raw_value:  # PostgreSQL cannot hold NUL in text, and no resource has one
                raise bad(raw_name, "a NUL character (%00) cannot be searched for")
            if name == "_count":  # 0: the total only (search.html#count); above MAX_COUNT: MAX_COUNT
                query.count = parse_integer(raw_name, raw_value, 0, MAX_COUNT)
            elif name == "_offset":
                query.offset = parse_integer(raw_name, raw_value, 0, MAX_OFFSET)
            elif name == "_sort":
                query.sort = _sort(raw_value, known)
            elif name == "_include":
                query.include.append(_include(raw_value, resource_type))
            elif name == "_total":
                query.total = _total(raw_value)
            elif name == "_totalMethod":  # fhirpy's count() sends it (Aidbox's parameter): a total is wanted
                query.total = True
            elif name == "_summary":
                _summary(query, raw_value)
            elif name == "_elements":
                query.elements = _elements(raw_value)
            elif name == "_revinclude":
                query.revinclude.append(chains.revinclude(raw_value, resource_type))
            elif name == "_has":
                query.criteria.append(_across(*chains.reverse(resource_type, raw_name), raw_value, reverse=True))
            elif "." in raw_name and not name.startswith("_"):
                query.criteria.append(_across(*chains.chained(resource_type, raw_name), raw_value))
            elif name in ("_format", "_pretty"):
                continue
            elif name in RESULT:
                raise bad(raw_name, f"{name} is not supported by this server")
            elif name in known:
                query.criteria.append(criterion(known[name], modifier or None, raw_value))
            else:
                raise bad(raw_name, f"unknown search parameter for {resource_type} (known: "
                                     f"{', '.join(sorted(known))})")
        except BadRequest as exc:
            if lenient and name not in ("_count",):
                query.ignored.append(raw_name)
            else:
                problems.extend(exc.issues)
    if problems:
        raise BadRequest("The search has parameters this server cannot use.", problems)
    if query.count == 0 and query.total is None:  # `_count=0`: the total alone, as `_summary=count`
        query.total = True
    return query


def _sort(raw: str, known: dict[str, Param]) -> list[tuple[str, bool]]:
    out = []
    for item in raw.split(","):
        descending = item.startswith("-")
        name = item.lstrip("-")
        if name not in SORTABLE or (name == "date" and not any(p.kind == "date" for p in known.values()
                                                                  if not p.name.startswith("_"))):
            raise bad("_sort", f"cannot sort by {name!r} (supported: date, _lastUpdated, _id)")
        out.append((name, descending))
    return out


def _include(raw: str, resource_type: str) -> tuple[str, str, str | None]:
    parts = raw.split(":")
    if len(parts) not in (2, 3) or parts[0] != resource_type:
        raise bad("_include", f"expected {resource_type}:parameter[:TargetType], not {raw!r}")
    param = params_of(resource_type).get(parts[1])
    if param is None or param.kind != "reference":
        raise bad("_include", f"{parts[1]!r} is not a reference parameter of {resource_type}")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def _total(raw: str) -> bool:
    if raw not in ("none", "estimate", "accurate"):
        raise bad("_total", f"_total={raw!r}: expected none, estimate or accurate")
    return raw != "none"  # an estimate is the accurate count here: one window count over the matching keys


def _summary(query: Query, raw: str) -> None:
    if raw not in ("true", "text", "data", "count", "false"):
        raise bad("_summary", f"_summary={raw!r}: expected true, text, data, count or false")
    query.summary = raw
    if raw == "count":  # the total alone (search.html#summary)
        query.count, query.total = 0, True


def _elements(raw: str) -> list[str]:
    names = [n.strip().removesuffix("[x]") for n in raw.split(",") if n.strip()]
    if not names or not all(n.isidentifier() for n in names):
        raise bad("_elements", f"_elements={raw!r}: expected element names separated by commas (id,status)")
    return names


def _across(reference: Param, ends: chains.Ends, raw: str, reverse: bool = False) -> Criterion:
    return Criterion(reference, None, (), tuple((other, criterion(param, modifier, raw))
                                                for other, param, modifier in ends), reverse)


def criterion(param: Param, modifier: str | None, raw: str) -> Criterion:
    """`param[:modifier]=raw` (raw: alternatives separated by commas)."""
    modifiers: dict[str, set[str | None]] = {"token": {None, "not"}, "reference": {None}, "date": {None},
                                             "string": {None, "exact", "contains"}}
    allowed = modifiers[param.kind] | {"missing"}
    if param.name in ("_id", "_lastUpdated"):  # every resource has them: nothing to miss
        allowed = {None}
    if modifier not in allowed:
        raise bad(f"{param.name}:{modifier}", f"modifier :{modifier} is not supported for {param.name}")
    if raw == "":
        raise bad(param.name, f"{param.name} needs a value")
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise bad(f"{param.name}:missing", "expected true or false")
        return Criterion(param, modifier, (Match(value=raw),))
    matches = tuple(_match(param, value) for value in _split(raw))
    return Criterion(param, modifier, matches)


def _split(raw: str) -> list[str]:
    """Comma-separated alternatives; `\\,` is a literal comma."""
    out, current, escaped = [], "", False
    for char in raw:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            out.append(current)
            current = ""
        else:
            current += char
    out.append(current)
    return out


def _match(param: Param, raw: str) -> Match:
    if param.kind == "token":
        if "|" in raw:
            system, code = raw.split("|", 1)
            return Match(system=cut(system) or None, system_given=True, value=cut(code) or None)
        return Match(value=cut(raw))
    if param.kind == "reference":
        if "/" not in raw.rstrip("/"):
            if not param.targets or len(param.targets) > 1 and "Patient" not in param.targets:
                raise bad(param.name, f"{param.name}={raw!r}: give the reference as Type/id")
            return Match(value=f"{param.targets[0]}/{raw}")
        key = reference_key(raw.rstrip("/"))  # None for "abc/_history/1", "/x": no type or no id
        if key is None:
            raise bad(param.name, f"{param.name}={raw!r}: give the reference as Type/id")
        if param.rows and key[0] not in param.targets:  # it reads another parameter's rows, which may name it
            raise bad(param.name, f"{param.name}={raw!r}: {param.name} refers to {' or '.join(param.targets)} only")
        return Match(value=cut(f"{key[0]}/{key[1]}"))
    if param.kind == "string":  # `system`: as given, for :exact
        return Match(system=raw, value=normalise(raw))
    prefix, text = (raw[:2], raw[2:]) if raw[:2] in DATE_PREFIXES else ("eq", raw)
    if prefix == "ne":
        raise bad(param.name, "the ne prefix is not supported; use lt and gt")
    found = date_range(text.replace(" ", "+"))
    if found is None:
        raise bad(param.name, f"{param.name}={raw!r} is not a FHIR date, dateTime or instant (with an "
                               f"optional prefix {', '.join(p for p in DATE_PREFIXES if p != 'ne')})")
    return Match(prefix=prefix, low=found[0], high=found[1])
