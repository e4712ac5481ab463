"""Codes walked with nothing found, remembered: a plain Coding or CodeableConcept's findings depend on its codes,
the element it is walked against, the run's policy and profile, and nothing else (codes repeat across resources);
so do a plain meta's, by its profiles, tags and security labels."""
from __future__ import annotations

from typing import Any

from service.validation.run import Run

#: the members of a plain Coding, and of a plain CodeableConcept
CODING, CONCEPT = ("system", "version", "code", "display", "userSelected"), frozenset({"coding", "text"})
CODING_KEYS = frozenset(CODING)
#: the members of a plain meta (frozen_meta)
META = frozenset({"profile", "tag", "security", "source"})
#: the element names a plain coded value (or meta) can hold, down to its codings' members
PARTS = frozenset({"coding", "text", *CODING, *META})
Token = tuple[int, str]  # (id of the element plan, type code): fixed where the walk is generated


def frozen_coding(value: Any) -> tuple[Any, ...] | None:
    """A plain coding's members in a fixed order, or None when it holds anything else (an id, an extension, a
    member of the wrong JSON type, a null: FHIR JSON refuses one, and `get` would read it as a member absent)."""
    if value.__class__ is not dict or not value.keys() <= CODING_KEYS or None in value.values():
        return None
    get = value.get
    system, version, code, display, selected = (get("system"), get("version"), get("code"), get("display"),
                                                get("userSelected"))
    for text in (system, version, code, display):
        if text is not None and text.__class__ is not str:
            return None
    if selected is not None and selected.__class__ is not bool:
        return None
    return system, version, code, display, selected


def frozen_concept(value: Any) -> tuple[Any, ...] | None:
    """A plain CodeableConcept (codings and a text, nothing else, no null) as a tuple, or None."""
    if value.__class__ is not dict or not value.keys() <= CONCEPT or None in value.values():
        return None
    text, codings = value.get("text"), value.get("coding", ())
    if text is not None and text.__class__ is not str or codings.__class__ not in (list, tuple):
        return None
    frozen: list[Any] = [text]
    for coding in codings:
        one = frozen_coding(coding)
        if one is None:
            return None
        frozen.append(one)
    return tuple(frozen)


def frozen_meta(value: Any) -> tuple[Any, ...] | None:
    """A resource's plain meta as a tuple: profiles and a source as texts, tags and security labels as plain codings,
    nothing else (an id, an extension, a versionId or lastUpdated: the last two differ from one stored resource to
    the next, and would only push out what recurs, or a null); None otherwise. A mapped record's meta is the same
    in each."""
    if value.__class__ is not dict or not value.keys() <= META or None in value.values():
        return None
    source, frozen = value.get("source"), []
    if source is not None and source.__class__ is not str:
        return None
    for name in ("profile", "tag", "security"):
        listed = value.get(name, ())
        if listed.__class__ is not list and listed != ():
            return None
        for item in listed:
            one = (item if item.__class__ is str else None) if name == "profile" else frozen_coding(item)
            if one is None:
                return None
            frozen.append((name, one))
    return source, tuple(frozen)


FREEZE = {"Coding": frozen_coding, "CodeableConcept": frozen_concept, "Meta": frozen_meta}


def coded_key(token: Token, value: Any, run: Run) -> tuple[Any, ...] | None:
    """The memo key of `value` walked at `token` in `run`, or None when it must be walked: not plain, or a
    terminology server may be asked (its answers are not ours to remember), or absent mustSupport elements are
    reported."""
    if run.policy.tx_server or run.must_support:
        return None
    frozen = FREEZE[token[1]](value)
    if frozen is None:
        return None
    return token, run.policy, run.plans[-1].url if run.plans else None, frozen
