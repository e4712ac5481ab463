"""Run the mapping specifications: a record → a transaction Bundle, and FHIR resources → a record.

Forward first decides which resources the record becomes (each role once, once per list item,
or not at all when its condition fails), gives each its deterministic identity, then applies the
rules. Reverse finds each role's resources again — by following the references the forward rules
made, or, for resources nothing refers to, by type and the fixed codes the role writes — and runs
every reversible rule backwards into the record.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from service.conformance.definitions import Definitions
from service.fhirjson import matches_pattern, references
from service.mapping.concepts import ConceptError, ConceptIndex
from service.mapping.identity import RecordKey, stable_id
from service.mapping.narrative import narrative
from service.mapping.paths import ElementPath, PathCompiler
from service.mapping.payload import Payload
from service.mapping.spec import Role, Rule, Spec, branch, field_path, lookup, put
from service.mapping.steps import Step, compiled
from service.mapping.transforms import MappingError, codes_only, reverse
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


@dataclass
class Reversed:
    kind: str
    record: dict[str, Any]
    used: list[str] = field(default_factory=list)   # references of the resources read
    notes: list[str] = field(default_factory=list)  # what could not be carried into the record



def _fields(each: _Made, rule: Rule) -> tuple[str, ...]:
    """The record fields a rule reads, as paths in the record (`vitals[2].systolic`): named only when asked, by
    origins or a failure (a Bundle maps ~140 rules)."""
    return tuple(field_path(each.base, name) for name in ([rule.field] if rule.field else rule.fields))

class Mapper:
    def __init__(self, specs: dict[str, Spec], defs: Definitions) -> None:
        self.specs = specs
        self.paths = PathCompiler(defs)
        self.concepts = ConceptIndex(defs)
        self._pointers: dict[tuple[str, str], list[tuple[Role, ElementPath]]] = {}
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
            found = self._steps_of[id(role)] = (role, [(rule, compiled(rule, path))
                                                       for rule, path in self._rule_paths(role)])
        return found[1]

    def found(self, role: Role, rule: Rule, resource: dict[str, Any]) -> Json:
        """The value at a rule's target in a resource: every item's, for a rule over a list (`each`)."""
        path = self.path(role, rule)
        return path.get_each(resource) if rule.each else path.get(resource)

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
        links = _ForwardLinks(self, spec, record, made)
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
                    request = {"method": "POST", "url": role.type,
                               "ifNoneExist": "identifier=" + quote(f"{escape(ident['system'])}|"
                                                                    f"{escape(ident['value'])}", safe="")}
                else:
                    identifier = RecordKey(spec.kind, source, external_id,
                                           None if role is spec.primary else role.role, item).identifier()
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

    # --- reverse ---------------------------------------------------------------------------

    def to_record(self, payload: dict[str, Any], resolve: Any = None) -> Reversed:
        """The record a Bundle (or a single resource) describes.

        `resolve(reference) -> resource | None` finds resources outside the payload (the facade's
        store); inside a Bundle, fullUrls and `Type/id` resolve on their own.
        """
        found = Payload(payload, resolve)
        spec, primary, by_role = self._assign(found)
        links = _ReverseLinks(self, found)
        record: dict[str, Any] = {}
        items: dict[str, dict[Any, dict[str, Any]]] = {}
        for role in spec.roles:
            for resource in by_role.get(role.role, []):
                values = self._read(role, resource, links)
                if role.for_each:
                    slot = items.setdefault(role.for_each, {})
                    key = _item_key(spec, role, resource, values)
                    _merge_into(slot.setdefault(key, {}), values)
                elif role.scope:
                    _merge_into(branch(record, role.scope), values)
                else:
                    _merge_into(record, values)
        notes: list[str] = []
        for list_field, slot in items.items():
            complete = []
            for key in sorted(slot):
                missing = [k for k in self._keys(spec, list_field) if k not in slot[key]]
                if missing:
                    notes.append(f"{list_field}: an item without {', '.join(missing)} was left out")
                else:
                    complete.append(slot[key])
            if complete:
                put(record, list_field, complete)
        source, external_id = _record_identity(spec, primary)
        record = {"external_id": external_id, "source": source, **record}
        used = [f"{r['resourceType']}/{r.get('id', '')}" for rs in by_role.values() for r in rs]
        return Reversed(spec.kind, record, used, notes)

    def _keys(self, spec: Spec, list_field: str) -> list[str]:
        """The fields every item of a list needs: the keys its roles group items by."""
        return sorted({k for role in spec.roles if role.for_each == list_field for k in role.key})

    def assign(self, payload: dict[str, Any], resolve: Any = None) -> tuple[str, dict[str, list[dict[str, Any]]]]:
        """(kind, role → the payload's resources playing it): what reverse reads, for review and tests."""
        spec, _, by_role = self._assign(Payload(payload, resolve))
        return spec.kind, by_role

    def reverse_links(self, payload: dict[str, Any], resolve: Any = None) -> _ReverseLinks:
        return _ReverseLinks(self, Payload(payload, resolve))

    def read_value(self, rule: Rule, found: Json, links: _ReverseLinks) -> Json:
        """One rule run backwards on the value at its target."""
        return reverse(rule, found, links)

    def _assign(self, found: Payload) -> tuple[Spec, dict[str, Any], dict[str, list[dict[str, Any]]]]:
        spec, primary = self._detect(found)
        by_role: dict[str, list[dict[str, Any]]] = {spec.primary.role: [primary]}
        claimed = {id(primary)}
        for role in spec.roles[1:]:
            # a role with fixed codes takes only what matches them (of a plan's two Conditions, the suicidality one)
            targets = [t for t in self._referenced(spec, role, by_role, found)
                       if id(t) not in claimed and self._matches(role, t)]
            if not targets and not role.person:
                # nothing points at it (vital signs, safety flags): it must point into the record
                ours = {name for rs in by_role.values() for r in rs for name in found.names(r)}
                targets = [r for r in found.resources if id(r) not in claimed and self._matches(role, r)
                           and _references(r) & ours]
            if not role.for_each:
                targets = targets[:1]  # one role, one resource: the main resource's reference comes first
            claimed.update(id(t) for t in targets)
            by_role[role.role] = targets
        return spec, primary, by_role

    def _detect(self, found: Payload) -> tuple[Spec, dict[str, Any]]:
        candidates = []
        for spec in self.specs.values():
            for resource in found.resources:
                if self._matches(spec.primary, resource) and not self._is_part_of_other(spec, resource):
                    candidates.append((spec, resource))
        if not candidates:
            kinds = ", ".join(f"{s.primary.type} ({s.kind})" for s in self.specs.values())
            raise MappingError(f"no resource maps to a record: expected one of {kinds}")
        mains = {(s.kind, id(r)) for s, r in candidates}
        if len(mains) > 1:
            # the resource others point at wins: a session's score Observation is not an assessment
            ranked = sorted(candidates, key=lambda c: list(self.specs).index(c[0].kind))
            first_type = ranked[0][0].primary.type
            ranked = [c for c in ranked if c[0].primary.type == first_type]
            if len(ranked) > 1:
                raise MappingError(f"the payload holds {len(ranked)} {first_type} resources; send one record at a time")
            return ranked[0]
        return candidates[0]

    def _is_part_of_other(self, spec: Spec, resource: dict[str, Any]) -> bool:
        """A score Observation `partOf` a session belongs to that session, not to an assessment."""
        return spec.primary.type == "Observation" and bool(resource.get("partOf"))

    def _matches(self, role: Role, resource: dict[str, Any]) -> bool:
        if resource.get("resourceType") != role.type:
            return False
        for rule in role.rules:
            if rule.transform != "fixed" or rule.to.split(".")[0].split(":")[0] not in ("code", "category", "class"):
                continue
            expected = rule.params["value"]
            template = self.path(role, rule).leaf_template
            actual = self.path(role, rule).get(resource)
            if actual is None:
                return False
            candidates = actual if isinstance(actual, list) else [actual]
            pattern = _discriminating(expected, template)
            if not any(matches_pattern(c, pattern) for c in candidates):
                return False
        return True

    def _referenced(self, spec: Spec, role: Role, by_role: dict[str, list[dict[str, Any]]],
                    found: Payload) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for other, path in self._pointing(spec, role):
            for resource in by_role.get(other.role, []):
                refs = path.get(resource)
                for ref in refs if isinstance(refs, list) else [refs] if refs else []:
                    target = found.resolve(ref, resource)
                    if target is not None and target.get("resourceType") == role.type and \
                            all(t is not target for t in out):
                        out.append(target)
        return out

    def _pointing(self, spec: Spec, role: Role) -> list[tuple[Role, ElementPath]]:
        """The reference rules pointing at `role`, with their paths: found once, not over every rule per role read."""
        if (key := (spec.kind, role.role)) not in self._pointers:
            self._pointers[key] = [(other, self.path(other, rule)) for other in spec.roles for rule in other.rules
                                   if rule.transform == "reference" and rule.params.get("ref") == role.role]
        return self._pointers[key]

    def _read(self, role: Role, resource: dict[str, Any], links: _ReverseLinks) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for rule in role.rules:
            if not rule.reversible or rule.field is None:
                continue
            value = reverse(rule, self.found(role, rule, resource), links)
            if value is not None:
                put(values, rule.field, value)
        return values


class _ForwardLinks:
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

    def record_reference(self, kind: str, role: str | None, external_id: str) -> dict[str, Any]:
        spec = self.mapper.specs[kind]
        target = spec.role(role) if role else spec.primary
        identifier = RecordKey(kind, self.source, external_id,
                               None if target is spec.primary else target.role).identifier()
        return {"reference": f"{target.type}/{stable_id(identifier['system'], identifier['value'])}",
                "identifier": identifier}

    def external_id_of(self, kind: str, role: str | None, reference: dict[str, Any]) -> str | None:
        raise NotImplementedError  # forward never reads references


class _ReverseLinks:
    def __init__(self, mapper: Mapper, found: Payload) -> None:
        self.concepts = mapper.concepts
        self.found = found
        self.record: dict[str, Any] = {}  # reverse reads FHIR, never the record

    def references(self, role: str) -> list[dict[str, Any]]:
        raise NotImplementedError  # reverse never makes references

    def record_reference(self, kind: str, role: str | None, external_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def external_id_of(self, kind: str, role: str | None, reference: dict[str, Any]) -> str | None:
        identifier = reference.get("identifier")
        if isinstance(identifier, dict):
            key = RecordKey.parse(identifier.get("system"), identifier.get("value"))
            if key is not None and key.kind == kind:
                return key.external_id
        target = self.found.resolve(reference, None)
        if target is not None:
            for ident in _identifiers(target):
                key = RecordKey.parse(ident.get("system"), ident.get("value"))
                if key is not None and key.kind == kind:
                    return key.external_id
            # a sender's own resource: its record is named the way _record_identity names it
            return _record_identity_of(target)[1]
        text = reference.get("reference")
        if isinstance(text, str) and text.count("/") >= 1 and not text.startswith("urn:"):
            return text.rstrip("/").split("/")[-1]
        return None


def leaves(node: Json, prefix: str = "") -> set[str]:
    """Every leaf of a JSON value as a FHIRPath with indexes: `code.coding[1].code`."""
    if isinstance(node, dict):
        return {leaf for key, value in node.items()
                for leaf in leaves(value, f"{prefix}.{key}" if prefix else key)}
    if isinstance(node, list):
        return {leaf for i, value in enumerate(node) for leaf in leaves(value, f"{prefix}[{i}]")}
    return {prefix}


def _references(node: Any) -> set[str]:
    """Every literal reference in a resource, also as `Type/id` for absolute URLs."""
    return {name for _, ref in references(node) for name in (ref, "/".join(ref.split("/")[-2:]))}


def _identifiers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    found = resource.get("identifier")
    items = found if isinstance(found, list) else [found] if isinstance(found, dict) else []
    return [i for i in items if isinstance(i, dict)]


def _record_identity(spec: Spec, primary: dict[str, Any]) -> tuple[str, str]:
    """(source, external_id): from our business identifier, else as _record_identity_of says."""
    for ident in _identifiers(primary):
        key = RecordKey.parse(ident.get("system"), ident.get("value"))
        if key is not None and key.kind == spec.kind and key.role is None:
            return key.source, key.external_id
    return _record_identity_of(primary)


def _record_identity_of(resource: dict[str, Any]) -> tuple[str, str]:
    """A sender's resource names its record by its first identifier (system as the source), else its id."""
    for ident in _identifiers(resource):
        if ident.get("system") and ident.get("value"):
            return str(ident["system"]), str(ident["value"])
    if resource.get("id"):
        return "fhir", str(resource["id"])
    raise MappingError(f"the {resource.get('resourceType')} has neither an identifier nor an id to name the record by")


def _item_key(spec: Spec, role: Role, resource: dict[str, Any], values: dict[str, Any]) -> Any:
    for ident in _identifiers(resource):
        key = RecordKey.parse(ident.get("system"), ident.get("value"))
        if key is not None and key.kind == spec.kind and key.item is not None:
            return (0, key.item)
    index = str(resource.get("id", "")).removeprefix(f"{role.role}-")
    if role.contained and index.isdigit():  # a contained item carries its place in its id (#role-item)
        return (0, int(index))
    return (1, tuple(str(values.get(name)) for name in role.key))


def _discriminating(expected: Json, template: dict[str, Any] | None) -> Json:
    """What a fixed value must match in reverse: its codes, not its displays."""
    return codes_only(expected if template is None or not isinstance(expected, dict) else {**template, **expected})


def _merge_into(target: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target.setdefault(key, value)
