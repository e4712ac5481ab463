"""FHIR primitive types: the JSON type each takes and its lexical rule (regex read from R4 core)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from service.conformance.definitions import Definitions

REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
INTEGERS = {"integer": (-2**31, 2**31 - 1), "positiveInt": (1, 2**31 - 1), "unsignedInt": (0, 2**31 - 1)}
PRIMITIVES = ("boolean", "integer", "decimal", "string", "code", "id", "uri", "url", "canonical", "oid", "uuid",
              "date", "dateTime", "instant", "time", "base64Binary", "markdown", "positiveInt", "unsignedInt", "xhtml")


@dataclass(frozen=True)
class Primitive:
    name: str
    pattern: re.Pattern[str] | None
    #: verdicts on short texts already checked: systems, codes, references and dates recur in every resource
    seen: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    def check(self, value: Any) -> str | None:
        """None when `value` is a valid JSON value of this type, else what is wrong with it."""
        if type(value) is str and self.name not in NOT_TEXT:  # the commonest case, straight to the text rules
            seen = self.seen
            found = seen.get(value, _UNSEEN)
            if found is not _UNSEEN:
                return found  # type: ignore[return-value]
            problem = self._text(value)
            if len(value) <= SEEN_LENGTH:
                if len(seen) >= SEEN_MAX:  # bounded: a long-running service meets endless distinct texts
                    seen.clear()
                seen[value] = problem
            return problem
        if self.name == "boolean":
            return None if isinstance(value, bool) else "must be true or false"
        if self.name in INTEGERS:
            low, high = INTEGERS[self.name]
            if isinstance(value, bool) or not isinstance(value, int):
                return "must be a JSON integer"
            return None if low <= value <= high else f"must be between {low} and {high}"
        if self.name == "decimal":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return None if ok else "must be a JSON number"
        if not isinstance(value, str):
            return "must be a JSON string"
        return self._text(value)

    def _text(self, value: str) -> str | None:
        if value == "":
            return "must not be empty"
        if self.name == "string" and len(value) > MAX_STRING:
            return f"is longer than {MAX_STRING:,} characters, the most a FHIR string may hold"
        if self.pattern is not None and not self.pattern.fullmatch(value):
            return f"is not a valid {self.name}"
        if self.name == "code" and (value != value.strip() or UNICODE_SPACE.search(value.replace(" ", ""))):
            return "has whitespace other than single spaces inside (a code's whitespace rules)"
        if self.name in ("date", "dateTime", "instant") and not _real_day(value):
            return f"is not a valid {self.name}: no such day"
        return None


NOT_TEXT = {"boolean", "decimal", *INTEGERS}  # the JSON types other than string
_UNSEEN = object()
SEEN_LENGTH, SEEN_MAX = 128, 2048  # texts remembered per type: at most 2,048 of at most 128 characters (< 0.5 MB)
#: R4 code: "no leading or trailing whitespace, and ... no whitespace other than single spaces in the contents";
#: whitespace in Unicode's sense (a no-break space is whitespace here, unlike in the regexes)
UNICODE_SPACE = re.compile(r"\s")
#: R4 §2.24.0.1 string: "Strings SHALL NOT exceed 1MB (1024*1024 characters) in size"
MAX_STRING = 1024 * 1024


def _real_day(value: str) -> bool:
    """The regexes allow 2026-02-30; the calendar does not."""
    if len(value) < 10:
        return True
    try:
        date.fromisoformat(value[:10])
    except ValueError:
        return False
    return True


def load_primitives(defs: Definitions) -> dict[str, Primitive]:
    """Each primitive type with the regex its R4 StructureDefinition gives for `<type>.value`."""
    out = {}
    for name in PRIMITIVES:
        value = next(e for e in defs.structure(name)["snapshot"]["element"] if e["id"] == f"{name}.value")
        regex = next((x["valueString"] for t in value.get("type", []) for x in t.get("extension", [])
                      if x["url"] == REGEX_EXT), None)
        # ASCII: the regexes are Java's (the HL7 validator's), where \s and \S mean ASCII whitespace only, so a
        # no-break space (U+00A0) in a string is a character like any other, not whitespace the regex refuses
        compiled = re.compile(regex, re.ASCII) if regex and name not in INTEGERS and name != "boolean" else None
        out[name] = Primitive(name, compiled)
    return out
