"""How much one search may ask: alternatives per parameter, parameters per query, alternatives in all.

Checked on the raw parameters, before parsing: each alternative becomes a condition in SQL, and 300 OR'd codes
took 5 s, 990 broke SQLite's expression depth (a 500), 3,000 AND'ed parameters the same. HAPI FHIR and the
public servers refuse far smaller searches than these limits; a client needing more splits its search.
"""
from __future__ import annotations

from service.errors import BadRequest, Issue

#: comma-separated values of one parameter (search.html#combining: OR)
MAX_ALTERNATIVES = 100
#: parameters of one search, the result parameters (_count, _sort, _include...) among them
MAX_PARAMETERS = 30
#: alternatives of every parameter together: each is one condition the database evaluates per candidate row
MAX_TOTAL_ALTERNATIVES = 200


def check(items: list[tuple[str, str]]) -> None:
    """400 naming the limit a search goes past."""
    if len(items) > MAX_PARAMETERS:
        raise BadRequest(f"A search may have at most {MAX_PARAMETERS} parameters; this one has {len(items)}.",
                         [Issue("parameters", f"at most {MAX_PARAMETERS} parameters")])
    total = 0
    for name, value in items:
        alternatives = alternatives_in(value)
        if alternatives > MAX_ALTERNATIVES:
            raise BadRequest(f"A search parameter may have at most {MAX_ALTERNATIVES} alternatives; {name} has "
                             f"{alternatives}.", [Issue(name, f"at most {MAX_ALTERNATIVES} alternatives")])
        total += alternatives
    if total > MAX_TOTAL_ALTERNATIVES:
        raise BadRequest(f"A search may have at most {MAX_TOTAL_ALTERNATIVES} alternatives in all; this one has "
                         f"{total}.", [Issue("parameters", f"at most {MAX_TOTAL_ALTERNATIVES} alternatives in all")])


def alternatives_in(value: str) -> int:
    """Comma-separated values (`\\,` is a comma inside one)."""
    return value.count(",") - value.count("\\,") + 1
