"""FHIR JSON toolkit: references (walk, rewrite, Type/id), patterns, weak ETags, OperationOutcomes, refusals.

A bottom layer: it imports the standard library and service.errors only, so every package may use it.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from service.errors import Issue, Unprocessable

# --- text --------------------------------------------------------------------------------------


def _not_serialisable(value: Any) -> Any:
    """What json.JSONEncoder.default raises."""
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def _dumps() -> Callable[[Any], str]:
    """json.dumps with its defaults (ASCII escapes, `, ` and `: `), the same C encoder with the same settings made once:
    json.dumps made one a call (~35 a clinic record) and kept every object and array in a dict while inside it, to
    report a cycle, which JSON parsed or mapped cannot hold (one would end in RecursionError instead of ValueError)."""
    if c_make_encoder is None:  # an interpreter without the C encoder
        return json.dumps
    encode = c_make_encoder(None, _not_serialisable, encode_basestring_ascii, None, ": ", ", ", False, False, True)
    return lambda value: "".join(encode(value, 0))


#: json.dumps(value), the same text (tests/test_fhirjson.py)
dumps = _dumps()

# --- references --------------------------------------------------------------------------------


def references(node: Any, path: str = "$", *, contained: bool = True) -> Iterator[tuple[str, str]]:
    """Every literal reference under `node` in document order, as (FHIRPath of its `reference` element,
    the reference). `contained=False` skips contained resources, whose references are their own business."""
    stack: list[tuple[Any, str]] = [(node, path)]
    push = stack.append
    while stack:  # a stack, not recursion: JSON from an EHR has no depth limit of ours
        current, where = stack.pop()
        # only objects and arrays go on the stack: a primitive holds no reference, and building its path cost most
        # of the walk (it runs three times a resource on every write)
        if isinstance(current, dict):
            ref = current.get("reference")
            if isinstance(ref, str):
                yield f"{where}.reference", ref
            for key, value in reversed(current.items()):
                if isinstance(value, (dict, list)) and (contained or key != "contained"):
                    push((value, f"{where}.{key}"))
        elif isinstance(current, list):
            for i in range(len(current) - 1, -1, -1):
                if isinstance(current[i], (dict, list)):
                    push((current[i], f"{where}[{i}]"))


def reference_key(ref: str) -> tuple[str, str] | None:
    """(type, id) of a literal reference, relative or absolute, its version dropped; None for anything else
    (`#contained`, `urn:uuid:…`, a bare id)."""
    parts = ref.split("/_history/")[0].split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-1]:
        return parts[-2], parts[-1]
    return None


def rewrite_references(node: Any, names: Mapping[str, str]) -> Any:
    """A copy of `node` in which each reference that `names` holds is replaced by what it maps to."""
    if isinstance(node, list):
        return [rewrite_references(v, names) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: rewrite_references(v, names) for k, v in node.items()}
    ref = out.get("reference")
    if isinstance(ref, str) and ref in names:
        out["reference"] = names[ref]
    return out


def rewritten(resource: dict[str, Any], names: Mapping[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """rewrite_references and then `references(copy, resourceType, contained=False)` in one walk: the copy, and
    every literal reference in it outside contained resources, in document order, as (FHIRPath, reference).
    A write walked each resource three times (rewrite, reference check, link rows)."""
    found: list[tuple[str, str]] = []

    # `where`: the path as nested steps (_path), written out only for a reference found (a resource has ~40
    # objects and arrays, ~5 references); None inside a contained resource, whose references are not collected
    def walk(node: dict[str, Any], where: Any) -> dict[str, Any]:
        out = node.copy()  # the scalars as they are, in their order; objects and arrays replaced by copies below
        ref = node.get("reference")
        if isinstance(ref, str):
            ref = names.get(ref, ref)
            if where is not None:
                found.append((f"{_path(where)}.reference", ref))
            out["reference"] = ref
        for key, value in node.items():
            if value.__class__ is str:  # most members: nothing to do
                continue
            if isinstance(value, dict):
                out[key] = walk(value, None if where is None or key == "contained" else (where, key))
            elif isinstance(value, list):
                out[key] = walk_list(value, None if where is None or key == "contained" else (where, key))
        return out

    def walk_list(node: list[Any], where: Any) -> list[Any]:
        out = node.copy()  # as walk's: the scalars as they are (a comprehension's frame and conditions cost more)
        for i, value in enumerate(node):
            if value.__class__ is str:
                continue
            if isinstance(value, dict):
                out[i] = walk(value, None if where is None else (where, i, None))
            elif isinstance(value, list):
                out[i] = walk_list(value, None if where is None else (where, i, None))
        return out

    return walk(resource, str(resource.get("resourceType", ""))), found


def renaming(names: Mapping[str, str]) -> dict[str, str] | None:
    """For `renamed`: each reference `names` rewrites, as dumps writes it but for its opening quote, to the name it
    is rewritten to, written so; None when a name is rewritten to another name (rewritten renames once, one
    replacement after another would twice)."""
    if any(new in names for new in names.values()):
        return None
    return {encode_basestring_ascii(old)[1:]: encode_basestring_ascii(new)[1:] for old, new in names.items()}


def renamed(text: str, renames: dict[str, str]) -> str | None:
    """dumps(rewritten(value, names)[0]) from `text`, dumps(value), without encoding it again (`renames`:
    renaming(names)); None when the text cannot tell. In dumps's text a `"` inside a string is escaped (`\\"`), so
    `"reference": "old"` is a member named reference holding "old" unless its first quote is an escaped one, the end
    of a member name that holds `"` (no FHIR element's): then None, as it cannot tell which. Each such member is
    found once, its string up to the next quote looked up (a reference holding a `\\` has its members replaced one
    name after another: a quote in it may be an escaped one). A `in` and a replace for every name cost ~5 times more
    (~80 searches of a record's texts)."""
    if '\\"reference": ' in text:
        return None
    at = text.find(_MEMBER)
    parts: list[str] = []
    done = 0
    while at >= 0:
        start = at + len(_MEMBER)
        end = text.find('"', start) + 1  # past the string's closing quote, unless it holds a `\\`
        if end == 0:
            break
        value = text[start:end]
        if "\\" in value:
            return _renamed_each(text, renames)
        new = renames.get(value)
        if new is not None:
            parts += (text[done:start], new)
            done = end
        at = text.find(_MEMBER, end)
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


#: a member named reference holding a string, as dumps writes it (up to the string's opening quote)
_MEMBER = '"reference": "'


def _renamed_each(text: str, renames: dict[str, str]) -> str:
    """renamed(), each name's member replaced wherever it is, one name after another."""
    for old, new in renames.items():
        old = f'{_MEMBER}{old}'
        if old in text:
            text = text.replace(old, f'{_MEMBER}{new}')
    return text


def _path(where: Any) -> str:
    """The FHIRPath of rewritten's nested steps: (parent, name) gives `.name`, (parent, i, None) `[i]`."""
    steps = []
    while where.__class__ is tuple:
        steps.append(f".{where[1]}" if len(where) == 2 else f"[{where[1]}]")
        where = where[0]
    return where + "".join(reversed(steps))  # type: ignore[no-any-return]


def matches_pattern(value: Any, pattern: Any) -> bool:
    """FHIR pattern[x] (elementdefinition-definitions.html#ElementDefinition.pattern_x_): every property of the
    pattern is in the value, each item of a pattern list in the value's list; anything else equal."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and matches_pattern(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(matches_pattern(v, p) for v in value) for p in pattern)
    return bool(value == pattern)


# --- ETags -------------------------------------------------------------------------------------

#: RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE
_ENTITY_TAG = re.compile(r'(?:W/)?"([\x21\x23-\x7e\x80-\xff]*)"')


def etag(version: int | str) -> str:
    """The weak ETag of a version, `W/"3"`, as FHIR servers send it (http.html#versioning)."""
    return f'W/"{version}"'


def etag_tag(text: str) -> str | None:
    """The opaque tag of an entity-tag (`W/"3"` and `"3"` both give `3`); None when `text` is not one."""
    match = _ENTITY_TAG.fullmatch(text.strip())
    return match.group(1) if match else None


def etag_version(text: str) -> int | None:
    """The version an ETag of ours names (`W/"3"` → 3); None for anything else (`3`, `W/"x"`, `*`)."""
    tag = etag_tag(text)
    return version_id(tag) if tag is not None else None


def if_match_version(text: str) -> int | None:
    """The version a FHIR If-Match header or Bundle `ifMatch` names, read as HAPI FHIR reads it: `W/"3"`, `"3"` and
    the bare `3` some clients send all give 3; None for anything else. (The domain API takes only ETags it issued.)"""
    return version_id(text.strip().removeprefix("W/").strip('"'))


def version_id(text: str) -> int | None:
    """A versionId of ours (`3`, as in `_history/3`); None for anything else: not ASCII digits ('²' is a digit
    to isdigit(), not to int()), or more digits than any version has (int() refuses past 4,300 of them)."""
    return int(text) if 0 < len(text) <= 18 and text.isascii() and text.isdigit() else None


# --- OperationOutcome ----------------------------------------------------------------------------

ISSUE_LINE = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-line"
ISSUE_COL = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-col"
SEVERITY_ORDER = {"fatal": 0, "error": 1, "warning": 2, "information": 3}
#: HTTP status → the issue code (R4 IssueType) of the OperationOutcome that answers with it.
ISSUE_TYPE = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
              406: "not-supported", 409: "conflict", 410: "deleted", 412: "conflict", 413: "too-costly",
              415: "not-supported", 422: "processing", 428: "required", 429: "throttled"}


def issue(severity: str, code: str, text: str, expression: str | None = None) -> dict[str, Any]:
    """One OperationOutcome.issue; `expression` is the FHIRPath of the element it is about."""
    out: dict[str, Any] = {"severity": severity, "code": code, "details": {"text": text}}
    if expression is not None:
        out["expression"] = [expression]
    return out


#: the most issues, and about the most bytes, one OperationOutcome carries (a final issue counts what was left out):
#: one per element of a hostile document once made an 89 MB answer
MAX_ISSUES = 100
MAX_OUTCOME_BYTES = 64 * 1024
#: an issue's text is cut here (texts quote element names and values, which the sender chose)
MAX_ISSUE_TEXT = 1_000


def outcome(issues: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """An OperationOutcome of `issues`; with none it says so, as an OperationOutcome needs one issue. Capped at
    MAX_ISSUES issues and about MAX_OUTCOME_BYTES: errors first, then a final issue saying how many were left out."""
    found = list(issues) or [issue("information", "informational", "No issues found.")]
    return {"resourceType": "OperationOutcome", "issue": capped(found)}


def capped(issues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`issues` as they are when within the caps; else the worst first (document order within a severity), texts
    cut, up to the caps, and a last issue counting the rest."""
    kept = _within_caps(issues)
    if len(kept) == len(issues):
        return kept
    ranked = sorted(issues, key=lambda i: SEVERITY_ORDER.get(str(i.get("severity")), 4))
    kept = _within_caps(ranked, room=1)
    rest = ranked[len(kept):]
    errors = sum(1 for i in rest if i.get("severity") in ("error", "fatal"))
    return [*kept, issue("information", "too-costly", f"{len(rest)} more issues left out ({errors} of them errors); "
                         f"an OperationOutcome here holds at most {MAX_ISSUES} issues and about "
                         f"{MAX_OUTCOME_BYTES} bytes. Fix these and ask again to see the rest.")]


def _within_caps(issues: list[dict[str, Any]], room: int = 0) -> list[dict[str, Any]]:
    """The leading issues that fit MAX_ISSUES - `room` and MAX_OUTCOME_BYTES, each with its text cut."""
    kept: list[dict[str, Any]] = []
    size = 0
    for item in issues[:MAX_ISSUES - room]:
        text = (item.get("details") or {}).get("text")
        if isinstance(text, str) and len(text) > MAX_ISSUE_TEXT:
            item = item | {"details": item["details"] | {"text": text[:MAX_ISSUE_TEXT] + "… (cut)"}}
        size += len(json.dumps(item, ensure_ascii=False))
        if size > MAX_OUTCOME_BYTES - 1024 * room:
            break
        kept.append(item)
    return kept


@dataclass(frozen=True)
class Finding:
    """One problem: where (FHIRPath with indexes), how bad, what kind (IssueType) and why."""

    severity: str
    code: str
    expression: str
    message: str
    line: int | None = None  # in the JSON text, when the input was text (validation/positions.py)
    column: int | None = None

    def as_issue(self) -> dict[str, Any]:
        out = issue(self.severity, self.code, self.message, self.expression)
        if self.line is not None and self.column is not None:
            # as HAPI 8.8.0 does (ca.uhn.fhir.validation.ValidationResult): line/col extensions and the
            # position as a second location beside the path
            out["extension"] = [{"url": ISSUE_LINE, "valueInteger": self.line},
                                {"url": ISSUE_COL, "valueInteger": self.column}]
            out["location"] = [self.expression, f"Line[{self.line}] Col[{self.column}]"]
        return out

    @property
    def is_error(self) -> bool:
        return self.severity in ("error", "fatal")


def operation_outcome(findings: Iterable[Finding]) -> dict[str, Any]:
    return outcome(f.as_issue() for f in findings)


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.is_error for f in findings)


def findings_of(operation_outcome: Mapping[str, Any]) -> list[Finding]:
    """The findings an OperationOutcome holds: its issues that name an element (not 'No issues found.')."""
    return [Finding(i["severity"], i["code"], i["expression"][0], i["details"]["text"])
            for i in operation_outcome.get("issue", []) if i.get("expression")]


def error_outcome(status: int, detail: str, issues: Sequence[Issue] = (),
                  full: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The OperationOutcome of a refused request: the detail first, then one issue per field with its FHIRPath,
    or, when the validator's own OperationOutcome (`full`) is at hand, its issues with their severities."""
    code = ISSUE_TYPE.get(status, "exception")
    lead = issue("error", code, detail)
    if full is not None:  # an OperationOutcome of ours, capped already: the lead goes on top
        return {"resourceType": "OperationOutcome", "issue": [lead, *full["issue"]]}
    return outcome([lead, *(issue("error", code, i.message, i.field) for i in issues)])


def refuse_errors(findings: Sequence[Finding], detail: str) -> None:
    """Unprocessable (422) when any finding is an error: it carries each error as an issue and the whole
    OperationOutcome (warnings too) as `operation_outcome`, which the /fhir error response shows."""
    errors = [Issue(f.expression, f.message[:MAX_ISSUE_TEXT]) for f in findings if f.is_error]
    if errors:  # listed in problem+json too: no more of them than an OperationOutcome holds
        raise Unprocessable(detail, errors[:MAX_ISSUES], operation_outcome=operation_outcome(findings))
