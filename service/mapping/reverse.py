"""The mapping run backwards: FHIR resources → a record (Mapper.to_record).

Reverse finds each role's resources again — by following the references the forward rules made, or, for resources
nothing refers to, by type and the fixed codes the role writes — and runs every reversible rule backwards into the
record.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.fhirjson import matches_pattern, references
from service.mapping.concepts import ConceptIndex
from service.mapping.identity import RecordKey
from service.mapping.paths import ElementPath, PathCompiler
from service.mapping.payload import Payload
from service.mapping.spec import Role, Rule, Spec, branch, put
from service.mapping.transforms import MappingError, codes_only, reverse

Json = Any


@dataclass
class Reversed:
    kind: str
    record: dict[str, Any]
    used: list[str] = field(default_factory=list)   # references of the resources read
    notes: list[str] = field(default_factory=list)  # what could not be carried into the record


class Reader:
    """The specifications run backwards (the Mapper's reverse half), on the Mapper's compiled paths and concepts."""

    def __init__(self, specs: dict[str, Spec], paths: PathCompiler, concepts: ConceptIndex) -> None:
        self.specs = specs
        self.paths = paths
        self.concepts = concepts
        self._pointers: dict[tuple[str, str], list[tuple[Role, ElementPath]]] = {}

    def path(self, role: Role, rule: Rule) -> ElementPath:
        return self.paths.compile(role.structure, rule.to)

    def found(self, role: Role, rule: Rule, resource: dict[str, Any]) -> Json:
        """The value at a rule's target in a resource: every item's, for a rule over a list (`each`)."""
        path = self.path(role, rule)
        return path.get_each(resource) if rule.each else path.get(resource)

    def to_record(self, payload: dict[str, Any], resolve: Any = None) -> Reversed:
        """The record a Bundle (or a single resource) describes.

        `resolve(reference) -> resource | None` finds resources outside the payload (the facade's
        store); inside a Bundle, fullUrls and `Type/id` resolve on their own.
        """
        found = Payload(payload, resolve)
        spec, primary, by_role = self._assign(found)
        links = PayloadLinks(self, found)
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

    def reverse_links(self, payload: dict[str, Any], resolve: Any = None) -> PayloadLinks:
        return PayloadLinks(self, Payload(payload, resolve))

    def read_value(self, rule: Rule, found: Json, links: PayloadLinks) -> Json:
        """One rule run backwards on the value at its target."""
        return reverse(rule, found, links)

    def _assign(self, found: Payload) -> tuple[Spec, dict[str, Any], dict[str, list[dict[str, Any]]]]:
        spec, primary = self._detect(found)
        by_role: dict[str, list[dict[str, Any]]] = {spec.primary.role: [primary]}
        claimed = {id(primary)}
        ours: set[str] | None = None  # the names of the resources taken so far, while no role takes more
        for role in spec.roles[1:]:
            # a role with fixed codes takes only what matches them (of a plan's two Conditions, the suicidality one)
            targets = [t for t in self._referenced(spec, role, by_role, found)
                       if id(t) not in claimed and self._matches(role, t)]
            if not targets and not role.person:
                # nothing points at it (vital signs, safety flags): it must point into the record
                if ours is None:
                    ours = {name for rs in by_role.values() for r in rs for name in found.names(r)}
                targets = [r for r in found.resources if id(r) not in claimed and self._matches(role, r)
                           and _references(r) & ours]
            if not role.for_each:
                targets = targets[:1]  # one role, one resource: the main resource's reference comes first
            claimed.update(id(t) for t in targets)
            if targets or role.role in by_role:  # what `ours` was made of changes
                ours = None
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

    def _read(self, role: Role, resource: dict[str, Any], links: PayloadLinks) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for rule in role.rules:
            if not rule.reversible or rule.field is None:
                continue
            value = reverse(rule, self.found(role, rule, resource), links)
            if value is not None:
                put(values, rule.field, value)
        return values


class PayloadLinks:
    """transforms.ReverseLinks over one payload: the records its references name."""

    def __init__(self, mapper: Reader, found: Payload) -> None:
        self.concepts = mapper.concepts
        self.found = found

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
