"""Run the mapping specifications: a record → a transaction Bundle, and FHIR resources → a record (reverse.py).

Forward first decides which resources the record becomes (each role once, once per list item,
or not at all when its condition fails), gives each its deterministic identity, then applies the
rules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from service.conformance.definitions import Definitions
from service.mapping.concepts import ConceptError, ConceptIndex
from service.mapping.identity import RecordKey, RecordKeys, stable_id
from service.mapping.narrative import narrative
from service.mapping.paths import ElementPath, PathCompiler
from service.mapping.reverse import PayloadLinks, Reader, Reversed
from service.mapping.spec import Role, Rule, Spec, field_path, lookup
from service.mapping.steps import Step, compiled
from service.mapping.transforms import MappingError
from service.search.parameters import escape

TAG_SYSTEM = "https://ketamine-fhir.org/fhir/mapping"
Json = Any


@dataclass
class _Made:
    role: Role
    scope: Any
    item: int | None
    full_url: str
    resource: dict[str, Any]
    request: dict[str, str]

    @property
    def base(self) -> str:
        """Where the role's rules read in the record: `vitals[2].`, `patient.`, or the record itself."""
        if self.role.for_each:
            return f"{self.role.for_each}[{self.item}]."
        return f"{self.role.scope}." if self.role.scope else ""


@dataclass
class Origin:
    """What made one resource: its structure, and (JSON leaf `code.coding[1].code`, record fields) pairs."""

    structure: str
    leaves: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)


def _fields(each: _Made, rule: Rule) -> tuple[str, ...]:
    """The record fields a rule reads, as paths in the record (`vitals[2].systolic`): named only when asked, by
    origins or a failure (a Bundle maps ~140 rules)."""
    return tuple(field_path(each.base, name) for name in ([rule.field] if rule.field else rule.fields))


class Mapper:
    def __init__(self, specs: dict[str, Spec], defs: Definitions) -> None:
        self.specs = specs
        self.paths = PathCompiler(defs)
        self.concepts = ConceptIndex(defs)
        self.reader = Reader(specs, self.paths, self.concepts)
        self._paths_of: dict[int, tuple[Role, list[tuple[Rule, ElementPath]]]] = {}
        self._steps_of: dict[int, tuple[Role, list[tuple[Rule, Step]]]] = {}
        self.check()

    def check(self) -> None:
        """Compile every target path and concept map now, so a bad spec fails at start-up."""
        for spec in self.specs.values():
            for role in spec.roles:
                self.paths.compile(role.structure, "identifier")
                for rule in role.rules:
                    self.path(role, rule)
                    if rule.transform == "concept":
                        self.concepts.system(rule.params["map"])
                    if rule.transform == "record-reference" and rule.params["kind"] not in self.specs:
                        raise MappingError(f"{spec.kind}: {rule.to}: no mapping for kind {rule.params['kind']!r}")

    def path(self, role: Role, rule: Rule) -> ElementPath:
        return self.paths.compile(role.structure, rule.to)

    def _rule_paths(self, role: Role) -> list[tuple[Rule, ElementPath]]:
        """A role's rules, each with its compiled target path: looked up once per role, not once per rule and record
        (a session's Bundle runs ~140 rules)."""
        found = self._paths_of.get(id(role))
        if found is None or found[0] is not role:  # keyed by id(), the role held beside: an id is reused once its
            # object is freed (the admin's trace maps with roles made and dropped one after another)
            found = self._paths_of[id(role)] = (role, [(rule, self.path(role, rule)) for rule in role.rules])
        return found[1]

    def _rule_steps(self, role: Role) -> list[tuple[Rule, Step]]:
        """A role's rules, each with its step (steps.compiled), compiled once per role as _rule_paths."""
        found = self._steps_of.get(id(role))
        if found is None or found[0] is not role:
            found = self._steps_of[id(role)] = (role, [(rule, compiled(rule, path, self.concepts))
                                                       for rule, path in self._rule_paths(role)])
        return found[1]

    def found(self, role: Role, rule: Rule, resource: dict[str, Any]) -> Json:
        """The value at a rule's target in a resource: every item's, for a rule over a list (`each`)."""
        return self.reader.found(role, rule, resource)

    # --- forward ---------------------------------------------------------------------------

    def to_bundle(self, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        """The transaction Bundle for one record (its canonical form, as the intake stores it)."""
        return self._build(kind, record, None)

    def origins(self, kind: str, record: dict[str, Any]) -> dict[str, Origin]:
        """Per entry (fullUrl): its structure and the record fields behind each JSON leaf of its resource."""
        return self.traced(kind, record)[1]

    def traced(self, kind: str, record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Origin]]:
        """to_bundle's Bundle and its origins: the leaves each rule's step put."""
        track: dict[str, Origin] = {}
        return self._build(kind, record, track), track

    def _build(self, kind: str, record: dict[str, Any], track: dict[str, Origin] | None) -> dict[str, Any]:
        spec = self.specs[kind]
        made = self._instances(spec, record)
        links = _RecordLinks(self, spec, record, made)
        for each in made:
            if each.role.narrative is not None:
                each.resource["text"] = narrative(each.role.narrative, each.scope, record)
            origin = track.setdefault(each.full_url, Origin(each.role.structure)) if track is not None else None
            scope, resource = each.scope, each.resource
            for rule, step in self._rule_steps(each.role):
                before = leaves(resource) if origin is not None else None
                try:
                    step(scope, record, links, resource)
                except (MappingError, ConceptError) as exc:  # a local code no concept map knows: that field's fault
                    raise MappingError(str(exc), _fields(each, rule)) from None
                if origin is not None and before is not None:  # origins: the leaves this rule put
                    fields = _fields(each, rule)
                    origin.leaves.extend((leaf, fields) for leaf in sorted(leaves(resource) - before))
        entries, seen = [], set()
        for each in made:
            if each.role.contained:  # R4 contained resources have no meta.tag of their own to keep apart
                made[0].resource.setdefault("contained", []).append(
                    self.paths.ordered({k: v for k, v in each.resource.items() if k != "meta"}, each.role.structure))
        for each in made:
            if each.full_url in seen or each.role.contained:
                continue
            seen.add(each.full_url)
            resource = self.paths.ordered(each.resource, each.role.structure)
            entries.append({"fullUrl": each.full_url, "resource": resource, "request": each.request})
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

    def _instances(self, spec: Spec, record: dict[str, Any]) -> list[_Made]:
        source, external_id = record.get("source", "default"), record["external_id"]
        version = spec.exact_version  # the tag's texts, once for the record's resources
        code, display = f"{spec.kind}/{version}", f"Mapped by mappings/{spec.kind}.yaml version {version}"
        keys = RecordKeys(spec.kind, source, external_id)
        made: list[_Made] = []
        for role in spec.roles:
            scopes: list[tuple[Any, int | None]]
            if role.for_each:
                scopes = list(zip(lookup(record, role.for_each) or [], range(10**6), strict=False))
            else:
                scope = lookup(record, role.scope) if role.scope else record
                scopes = [(scope, None)] if scope is not None else []
            for scope, item in scopes:
                if role.when is not None and not role.when.holds(scope, record):
                    continue
                resource: dict[str, Any] = {"resourceType": role.type}
                if role.contained:  # one per list item: `#role-item`
                    resource["id"] = role.role if item is None else f"{role.role}-{item}"
                    made.append(_Made(role, scope, item, f"#{resource['id']}", resource, {}))
                    continue
                if role.person:
                    ident = scope["identifier"]
                    rid = stable_id(ident["system"], ident["value"])
                    request = {"method": "POST", "url": role.type, "ifNoneExist": _if_none_exist(ident)}
                else:
                    identifier = keys.identifier(None if role is spec.primary else role.role, item)  # RecordKey's
                    rid = resource["id"] = stable_id(identifier["system"], identifier["value"])  # RecordKey.id
                    request = {"method": "PUT", "url": f"{role.type}/{rid}"}
                    self.paths.compile(role.structure, "identifier").put(resource, identifier)
                meta: dict[str, Any] = {}
                if role.profile:
                    meta["profile"] = [role.profile]
                meta["tag"] = [{"system": TAG_SYSTEM, "code": code, "display": display}]
                resource["meta"] = meta
                made.append(_Made(role, scope, item, f"urn:uuid:{rid}", resource, request))
        return made

    # --- reverse (reverse.py) -------------------------------------------------------------

    def to_record(self, payload: dict[str, Any], resolve: Any = None) -> Reversed:
        """The record a Bundle (or a single resource) describes (Reader.to_record)."""
        return self.reader.to_record(payload, resolve)

    def assign(self, payload: dict[str, Any], resolve: Any = None) -> tuple[str, dict[str, list[dict[str, Any]]]]:
        """(kind, role → the payload's resources playing it): what reverse reads, for review and tests."""
        return self.reader.assign(payload, resolve)

    def reverse_links(self, payload: dict[str, Any], resolve: Any = None) -> PayloadLinks:
        return self.reader.reverse_links(payload, resolve)

    def read_value(self, rule: Rule, found: Json, links: PayloadLinks) -> Json:
        """One rule run backwards on the value at its target."""
        return self.reader.read_value(rule, found, links)



class _RecordLinks:
    """transforms.ForwardLinks over one record being mapped: its resources' fullUrls, and other records' ids."""

    def __init__(self, mapper: Mapper, spec: Spec, record: dict[str, Any], made: list[_Made]) -> None:
        self.concepts = mapper.concepts
        self.mapper = mapper
        self.spec = spec
        self.source = record.get("source", "default")
        self.record = record
        self.made = made
        self._urls: dict[str, list[str]] = {}  # by role, its resources' fullUrls: ~30 references a record
        for m in made:
            self._urls.setdefault(m.role.role, []).append(m.full_url)

    def references(self, role: str) -> list[dict[str, Any]]:
        return [{"reference": url} for url in self._urls.get(role, ())]

    def reference(self, role: str) -> dict[str, Any] | None:
        """The first of references(role), or None: a Reference rule's (~30 a record), without a list."""
        urls = self._urls.get(role)
        return {"reference": urls[0]} if urls else None

    def record_reference(self, kind: str, role: str | None, external_id: str) -> dict[str, Any]:
        spec = self.mapper.specs[kind]
        target = spec.role(role) if role else spec.primary
        identifier = RecordKey(kind, self.source, external_id,
                               None if target is spec.primary else target.role).identifier()
        return {"reference": f"{target.type}/{stable_id(identifier['system'], identifier['value'])}",
                "identifier": identifier}




def _if_none_exist(identifier: dict[str, str]) -> str:
    """A person's conditional create: `identifier=` and its token system|value, escaped and percent-encoded (quote
    maps byte by byte, so the system, one of a clinic's few, is encoded once: _token_system)."""
    return f"identifier={_token_system(identifier['system'])}%7C{quote(escape(identifier['value']), safe='')}"


@lru_cache(maxsize=256)
def _token_system(system: str) -> str:
    return quote(escape(system), safe="")


def leaves(node: Json, prefix: str = "") -> set[str]:
    """Every leaf of a JSON value as a FHIRPath with indexes: `code.coding[1].code`."""
    if isinstance(node, dict):
        return {leaf for key, value in node.items()
                for leaf in leaves(value, f"{prefix}.{key}" if prefix else key)}
    if isinstance(node, list):
        return {leaf for i, value in enumerate(node) for leaf in leaves(value, f"{prefix}[{i}]")}
    return {prefix}
