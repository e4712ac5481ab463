"""Codes walked with nothing found, remembered: a plain Coding or CodeableConcept's findings depend on its codes,
the element it is walked against, the run's policy and profile, and nothing else (codes repeat across resources);
so do a plain meta's, by its profiles, tags and security labels."""
from __future__ import annotations

from typing import Any

from service.validation.run import Run

#: the members of a plain Coding, and of a plain CodeableConcept
CODING, CONCEPT = ("system", "version", "code", "display", "userSelected"), frozenset({"coding", "text"})
#: the members of a plain meta (frozen_meta)
META = frozenset({"profile", "tag", "security", "source"})
#: the element names a plain coded value (or meta) can hold, down to its codings' members
PARTS = frozenset({"coding", "text", *CODING, *META})
Token = tuple[int, str]  # (id of the element plan, type code): fixed where the walk is generated


def frozen_coding(value: Any) -> tuple[Any, ...] | None:
    """A plain coding's members in a fixed order, or None when it holds anything else (an id, an extension, a
    member of the wrong JSON type, a null: FHIR JSON refuses one, and `get` would read it as a member absent).
    A member is another, or a null, exactly when fewer of ours are present than the coding has members: that count
    says what `keys() <= set(CODING) and None not in values()` did, at a fraction of the cost (and the same of a
    concept's and a meta's below)."""
    if value.__class__ is not dict:
        return None
    get = value.get
    system, code, display = get("system"), get("code"), get("display")
    if len(value) == 3 and system.__class__ is str and code.__class__ is str and display.__class__ is str:
        return system, None, code, display, None  # nearly every coding: the general case's answer for it
    version, selected = get("version"), get("userSelected")
    for text in (system, version, code, display):
        if text is not None and text.__class__ is not str:
            return None
    if selected is not None and selected.__class__ is not bool:
        return None
    if (system is not None) + (version is not None) + (code is not None) + (display is not None) \
            + (selected is not None) != len(value):
        return None
    return system, version, code, display, selected


def frozen_concept(value: Any) -> tuple[Any, ...] | None:
    """A plain CodeableConcept (codings and a text, nothing else, no null) as a tuple, or None."""
    if value.__class__ is not dict:
        return None
    text, codings = value.get("text"), value.get("coding")
    if (text is not None) + (codings is not None) != len(value) or text is not None and text.__class__ is not str:
        return None  # another member, or a null
    if codings is None:
        codings = ()
    elif codings.__class__ is not list or not codings:  # [] is an error (ele-1) that the concept without it lacks
        return None
    if len(codings) == 1:  # nearly every concept
        one = frozen_coding(codings[0])
        return None if one is None else (text, one)
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
    if value.__class__ is not dict:
        return None
    get = value.get
    source, profiles, tags, labels = get("source"), get("profile"), get("tag"), get("security")
    if (source is not None) + (profiles is not None) + (tags is not None) + (labels is not None) != len(value) \
            or source is not None and source.__class__ is not str:
        return None  # another member, or a null
    frozen: list[tuple[str, Any]] = []
    if profiles is not None:
        if profiles.__class__ is not list or not profiles:  # [] is an error (ele-1) that the meta without it lacks
            return None
        for item in profiles:
            if item.__class__ is not str:
                return None
            frozen.append(("profile", item))
    for name, listed in (("tag", tags), ("security", labels)):
        if listed is None:
            continue
        if listed.__class__ is not list or not listed:
            return None
        for item in listed:
            one = frozen_coding(item)
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
