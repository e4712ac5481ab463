"""Mapping specifications: the YAML files in mappings/, loaded into plain, immutable data.

One file per record kind (`administration.yaml`, …) plus `people.yaml`, the templates for the
Patient and Practitioner resources every kind refers to. A file lists the resources the record
becomes (its *roles*); each role lists rules: record field → FHIR element, the transform between
them, an optional condition and the one line a reviewer reads (`why`). A rule that cannot be read
backwards says so (`one_way: reason`); a record field no rule maps is listed under `unmapped`
with its reason. Loading checks the shape of every file and names the file and rule at fault.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path
from typing import Any

import yaml

from service.resources import data_dir

TRANSFORMS = {
    "copy", "date", "datetime", "quantity", "concept", "lookup", "fixed", "reference",
    "record-reference", "minutes-between", "ratio", "template", "scaled", "course-length",
}
#: Keys a rule may carry besides its transform's parameters.
RULE_KEYS = {"field", "fields", "to", "transform", "why", "when", "one_way", "each", "default"}
PARAMS = {
    "copy": set(), "date": set(), "datetime": set(),
    "quantity": {"unit", "unit_display", "unit_field"},
    "concept": {"map", "as", "system"},
    "lookup": {"values"},
    "fixed": {"value"},
    "reference": {"ref"},
    "record-reference": {"kind", "role"},
    "minutes-between": set(),
    "ratio": {"unit", "digits"},
    "template": {"text"},
    "scaled": {"factor", "unit"},
    "course-length": set(),
}
#: Transforms that produce a value from no single field, or only structure: never read back.
DERIVED = {"fixed", "reference", "minutes-between", "ratio", "template", "scaled", "course-length"}
_CONDITION = re.compile(r"^(not )?([\w.$\[\]]+)(?: (==|!=) (\S+))?$")


class SpecError(ValueError):
    """A mapping file that does not follow the specification format."""


Term = tuple[bool, str, "str | None", "str | None"]


@dataclass(frozen=True)
class Condition:
    """Terms `field`, `not field`, `field == value`, `field != value`; `and` binds before `or`.

    A name starting `$.` reads the whole record rather than the rule's scope (a list item).
    """

    text: str
    alternatives: tuple[tuple[Term, ...], ...]

    @classmethod
    def parse(cls, text: str, where: str) -> Condition:
        alternatives = []
        for alternative in str(text).split(" or "):
            terms = []
            for part in alternative.split(" and "):
                match = _CONDITION.match(part.strip())
                if not match:
                    raise SpecError(f"{where}: cannot read condition {text!r}")
                negate, name, op, value = match.groups()
                terms.append((bool(negate), name, op, value))
            alternatives.append(tuple(terms))
        return cls(str(text), tuple(alternatives))

    def holds(self, scope: Any, record: dict[str, Any]) -> bool:
        for terms in self.alternatives:  # any(all(...)), without two generators per rule of every record mapped
            for term in terms:
                if not _term(term, scope, record):
                    break
            else:
                return True
        return False


def _term(term: Term, scope: Any, record: dict[str, Any]) -> bool:
    negate, name, op, expected = term
    if "." not in name and scope.__class__ is dict:  # a field of the scope, as lookup reads it (~20 terms a record)
        value = scope.get(name)
    else:
        value = lookup(record, name[2:]) if name.startswith("$.") else lookup(scope, name)
    if op is None:
        result = value is not None and value != [] and value is not False
    else:
        same = _as_text(value) == expected
        result = same if op == "==" else not same
    return result != negate


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


@dataclass(frozen=True)
class Rule:
    to: str
    transform: str
    why: str
    field: str | None = None
    fields: tuple[str, ...] = ()
    params: dict[str, Any] = _field(default_factory=dict)
    when: Condition | None = None
    one_way: str | None = None
    each: bool = False
    default: Any = None   # what the contract says an absent field means; sent as such, so read back as such

    @property
    def reversible(self) -> bool:
        return self.one_way is None and self.transform not in DERIVED and self.field is not None


@dataclass(frozen=True)
class Narrative:
    """The human-readable text a resource carries (Resource.text, status generated): a title and
    lines like `Dose: {dose_mg} mg`; a line whose fields the record lacks is left out."""

    title: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Role:
    """One resource (or one per list item, with `for_each`) that a record becomes."""

    role: str
    type: str
    profile: str | None
    why: str
    rules: tuple[Rule, ...]
    scope: str | None = None        # record field the rules read from (`from:` object)
    for_each: str | None = None     # list field: one resource per item
    key: tuple[str, ...] = ()       # item fields that group resources of one item in reverse
    when: Condition | None = None
    person: bool = False            # found by business identifier (Patient, Practitioner)
    template: str | None = None     # the people.yaml template it came from
    narrative: Narrative | None = None
    contained: bool = False         # inside the main resource (`contained`, referenced as `#role`), not an entry

    @property
    def structure(self) -> str:
        return self.profile or self.type


@dataclass(frozen=True)
class Unmapped:
    field: str
    why: str


@dataclass(frozen=True)
class Spec:
    kind: str
    version: str
    title: str
    summary: str
    roles: tuple[Role, ...]
    unmapped: tuple[Unmapped, ...]
    path: Path | None = None
    digest: str = ""   # SHA-256 of the rules as loaded (the file's data and the people templates)

    @property
    def exact_version(self) -> str:
        """The version resources carry: the file's MAJOR.MINOR.PATCH and, as build metadata, the first 10 hex
        digits of the rules' digest, so two rule sets never share a tag even if someone forgot to bump."""
        return f"{self.version}+{self.digest[:10]}" if self.digest else self.version

    @property
    def primary(self) -> Role:
        return self.roles[0]

    def role(self, name: str) -> Role:
        for role in self.roles:
            if role.role == name:
                return role
        raise KeyError(name)


def lookup(data: Any, dotted: str) -> Any:
    """`patient.identifier.value` in nested dicts; None when any step is missing."""
    if "." not in dotted:  # most of a mapping's ~200 lookups a record
        return data.get(dotted) if isinstance(data, dict) else None
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def read(scope: Any, record: dict[str, Any], name: str) -> Any:
    """A rule's field: `$.period.end` in the whole record, any other name in the rule's scope (a list item)."""
    return lookup(record, name[2:]) if name.startswith("$.") else lookup(scope, name)


def field_path(base: str, name: str) -> str:
    """The record field a rule's field names: `goals[0].baseline` from base `goals[0].`, `period.end` from `$.`."""
    return name[2:] if name.startswith("$.") else base + name


def branch(data: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The object at `screening.baseline_bp` in nested dicts, made (empty) where it is missing."""
    node = data
    for part in dotted.split("."):
        node = node.setdefault(part, {})
    return node


def put(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `screening.baseline_bp.systolic` in nested dicts, making the objects on the way."""
    head, _, last = dotted.rpartition(".")
    (branch(data, head) if head else data)[last] = value


def folder() -> Path:
    return data_dir("mappings")


def load_all(directory: Path | None = None) -> dict[str, Spec]:
    """Every kind's specification in `directory` (default: the shipped mappings/), by kind."""
    base = directory or folder()
    templates = _templates(base / "people.yaml")
    specs: dict[str, Spec] = {}
    for path in sorted(base.glob("*.yaml")):
        if path.name == "people.yaml":
            continue
        spec = load_file(path, templates)
        if spec.kind in specs:
            raise SpecError(f"{path.name}: kind {spec.kind!r} is already mapped by another file")
        specs[spec.kind] = spec
    return specs


def load_file(path: Path, templates: dict[str, dict[str, Any]] | None = None) -> Spec:
    if templates is None:
        templates = _templates(path.parent / "people.yaml")
    return parse(_read(path), path.name, templates, path)


def parse(data: Any, where: str, templates: dict[str, dict[str, Any]], path: Path | None = None) -> Spec:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping at the top level")
    _only(data, {"kind", "version", "title", "summary", "resources", "unmapped"}, where)
    for key in ("kind", "version", "title", "resources"):
        if key not in data:
            raise SpecError(f"{where}: missing {key!r}")
    if not re.match(r"^\d+\.\d+\.\d+$", str(data["version"])):
        raise SpecError(f"{where}: version {data['version']!r} is not MAJOR.MINOR.PATCH")
    roles = tuple(_role(item, f"{where}: resources[{i}]", templates) for i, item in enumerate(data["resources"]))
    names = [r.role for r in roles]
    if len(set(names)) != len(names):
        raise SpecError(f"{where}: role names repeat: {names}")
    for role in roles:
        for rule in role.rules:
            ref = rule.params.get("ref")
            if ref is not None and ref not in names:
                raise SpecError(f"{where}: role {role.role}: rule to {rule.to}: no role {ref!r}")
    unmapped = tuple(Unmapped(str(u["field"]), str(u["why"])) for u in data.get("unmapped") or [])
    return Spec(str(data["kind"]), str(data["version"]), str(data["title"]), str(data.get("summary", "")),
                roles, unmapped, path, digest(data, templates))


def digest(data: Any, templates: dict[str, dict[str, Any]]) -> str:
    """The rules' identity: their data as parsed (comments, order of keys and YAML anchors do not count)."""
    canonical = json.dumps({"spec": data, "templates": templates}, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"{path.name}: not YAML: {exc}") from None


def _templates(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    data = _read(path)
    if not isinstance(data, dict) or not isinstance(data.get("templates"), dict):
        raise SpecError(f"{path.name}: expected `templates:` with one entry per person role")
    return data["templates"]  # type: ignore[no-any-return]


def _role(data: Any, where: str, templates: dict[str, dict[str, Any]]) -> Role:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping")
    used = data.get("use")
    if used is not None:
        _only(data, {"role", "use", "from", "why"}, where)
        if used not in templates:
            raise SpecError(f"{where}: no template {used!r} in people.yaml")
        merged = dict(templates[used])
        merged.update(role=data["role"], scope=data.get("from"), why=data.get("why", merged.get("why", "")))
        role = _role(merged, where, {})
        return Role(**{**role.__dict__, "template": used})
    _only(data, {"role", "type", "profile", "why", "rules", "for_each", "key", "when", "person", "scope",
                 "narrative", "contained"}, where)
    for key in ("role", "type", "rules"):
        if key not in data:
            raise SpecError(f"{where}: missing {key!r}")
    rules = tuple(_rule(r, f"{where} ({data['role']}): rules[{i}]") for i, r in enumerate(data["rules"]))
    when = Condition.parse(data["when"], where) if data.get("when") is not None else None
    return Role(str(data["role"]), str(data["type"]), data.get("profile"), str(data.get("why", "")), rules,
                data.get("scope"), data.get("for_each"), tuple(data.get("key") or ()), when,
                bool(data.get("person", False)), None, _narrative(data.get("narrative"), where),
                bool(data.get("contained", False)))


def _narrative(data: Any, where: str) -> Narrative | None:
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("title"), str) or not all(
            isinstance(line, str) for line in data.get("lines") or []):
        raise SpecError(f"{where}: narrative needs a `title` and a list of `lines`")
    return Narrative(data["title"], tuple(data.get("lines") or ()))


def _rule(data: Any, where: str) -> Rule:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping")
    transform = data.get("transform", "copy")
    if transform not in TRANSFORMS:
        raise SpecError(f"{where}: unknown transform {transform!r} (known: {', '.join(sorted(TRANSFORMS))})")
    _only(data, RULE_KEYS | PARAMS[transform], where)
    if "to" not in data or "why" not in data:
        raise SpecError(f"{where}: every rule names its target (`to`) and its reason (`why`)")
    if transform not in DERIVED and "field" not in data:
        raise SpecError(f"{where}: a {transform} rule reads a `field`")
    if transform not in DERIVED and str(data["field"]).startswith("$.") and "one_way" not in data:
        raise SpecError(f"{where}: a rule reading the whole record (`$.`) writes a copy; it is read back elsewhere, "
                        "so it says `one_way`")
    if "default" in data and ("field" not in data or data.get("each")):
        raise SpecError(f"{where}: `default` is for a rule that reads a `field` (one value, not `each`)")
    params = {k: v for k, v in data.items() if k in PARAMS[transform]}
    if transform == "concept" and "map" not in params:
        raise SpecError(f"{where}: a concept rule names its `map` (a local code system)")
    if transform == "lookup":
        values = params.get("values")
        if not isinstance(values, dict):
            raise SpecError(f"{where}: lookup `values` maps record values to FHIR values")
        if "one_way" not in data and len({repr(v) for v in values.values()}) != len(values):
            raise SpecError(f"{where}: a reversible lookup maps each record value to a distinct FHIR value")
    when = Condition.parse(data["when"], where) if data.get("when") is not None else None
    return Rule(str(data["to"]), transform, str(data["why"]), data.get("field"), tuple(data.get("fields") or ()),
                params, when, data.get("one_way"), bool(data.get("each", False)), data.get("default"))


def _only(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)}")
