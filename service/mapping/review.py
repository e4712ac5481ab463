"""Mappings for reviewers: the rules as a table (text, Markdown, JSON) and rule-level diffs between versions.

Everything here is rendered from the same loaded specifications the engine runs, with the
terminology each rule uses spelled out from the ConceptMaps (local code → standard code, display).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from service.mapping.concepts import LOCAL_BASE, ConceptIndex
from service.mapping.coverage import role_base
from service.mapping.spec import Role, Rule, Spec, field_path


@dataclass(frozen=True)
class Row:
    resource: str          # `MedicationAdministration` or `Observation (bp, per vitals item)`
    source: str            # record field(s), or `—` for fixed values and links
    target: str            # `MedicationAdministration.dosage.route`
    transform: str
    terminology: list[str]
    condition: str
    direction: str         # `both ways` or `one way: reason`
    why: str


def rows(spec: Spec, concepts: ConceptIndex) -> list[Row]:
    out: list[Row] = []
    for role in spec.roles:
        label = _role_label(role)
        base = role_base(role)
        for rule in role.rules:
            sources = [field_path(base, f) for f in ([rule.field] if rule.field else list(rule.fields))]
            conditions = [c.text for c in (role.when, rule.when) if c is not None]
            if rule.reversible:
                direction = "both ways"
            elif rule.one_way:
                direction = f"one way: {rule.one_way}"
            else:
                direction = "one way: " + ("derived" if rule.fields or rule.transform == "template" else "structure")
            out.append(Row(label, ", ".join(sources) or "—", f"{role.type}.{rule.to}", _transform(rule),
                           terminology(rule, concepts), " and ".join(conditions), direction, rule.why))
    return out


def _role_label(role: Role) -> str:
    notes = []
    if role.for_each:
        notes.append(f"one per {role.for_each} item")
    if role.person:
        notes.append(f"{role.scope}, found by identifier")
    label = f"{role.type} ({role.role})" if role.role.lower() != role.type.lower() else role.type
    return f"{label}, {'; '.join(notes)}" if notes else label


def _transform(rule: Rule) -> str:
    params = {k: v for k, v in rule.params.items() if k not in ("values", "value")}
    if rule.default is not None:  # reviewers see what an absent field is sent as
        params["absent"] = rule.default
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"{rule.transform}({shown})" if shown else rule.transform


def terminology(rule: Rule, concepts: ConceptIndex) -> list[str]:
    """The codes a rule can write, one `source → system|code "display"` line each."""
    if rule.transform == "concept":
        system = concepts.system(rule.params["map"])
        lines = []
        for code in system.concepts:
            chosen, with_local = system.forward(code, rule.params.get("system"))
            parts = [_coding(chosen)] if chosen else []
            if with_local:
                parts.append(_coding(system.local_coding(code)))
            lines.append(f"{code} → {' + '.join(parts)}")
        return lines
    if rule.transform == "lookup":
        return [f"{_plain(k)} → {_value(v)}" for k, v in rule.params["values"].items()]
    if rule.transform == "fixed":
        return [_value(rule.params["value"])]
    if rule.transform == "quantity" and "unit" in rule.params:
        return [f"UCUM {rule.params['unit']}"]
    return []


def _plain(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


SHORT = {"http://loinc.org": "LOINC", "http://snomed.info/sct": "SNOMED", "http://unitsofmeasure.org": "UCUM",
         "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm", "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM"}
PREFIXES = (LOCAL_BASE, "http://terminology.hl7.org/CodeSystem/", "http://hl7.org/fhir/")


def system_name(system: str | None) -> str:
    """LOINC, SNOMED, … or the code system's last path segment: what a reviewer recognises."""
    if system in SHORT:
        return SHORT[system]
    for prefix in PREFIXES:
        if system and system.startswith(prefix):
            return system[len(prefix):]
    return system or "?"


def _coding(coding: dict[str, Any] | None) -> str:
    if not coding:
        return ""
    display = f' "{coding["display"]}"' if coding.get("display") else ""
    return f"{system_name(coding.get('system'))} {coding.get('code')}{display}"


def _value(value: Any) -> str:
    if isinstance(value, dict) and "coding" in value:
        return " + ".join(_coding(c) for c in value["coding"])
    if isinstance(value, dict) and "code" in value:
        return _coding(value)
    return json.dumps(value) if not isinstance(value, str) else value


# --- rendering -----------------------------------------------------------------------------

def as_json(specs: list[Spec], concepts: ConceptIndex) -> str:
    return json.dumps([{"kind": s.kind, "version": s.version, "exact_version": s.exact_version, "title": s.title,
                        "summary": s.summary, "rules": [asdict(r) for r in rows(s, concepts)],
                        "unmapped": [asdict(u) for u in s.unmapped]} for s in specs], indent=2, ensure_ascii=False)


def as_markdown(specs: list[Spec], concepts: ConceptIndex) -> str:
    out: list[str] = []
    for spec in specs:
        lead = f"Kind `{spec.kind}`, mapping version {spec.exact_version}. {spec.summary}"
        out += [f"## {spec.title}", "", lead.strip(), ""]
        current = None
        for row in rows(spec, concepts):
            if row.resource != current:
                current = row.resource
                out += ["", f"### {row.resource}", "",
                        "| record field | FHIR element | transform | terminology | when | direction | why |",
                        "|---|---|---|---|---|---|---|"]
            cells = [row.source, row.target, row.transform, "<br>".join(row.terminology), row.condition,
                     row.direction, row.why]
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        if spec.unmapped:
            out += ["", "### Not mapped", "", "| record field | why |", "|---|---|"]
            out += [f"| {_cell(u.field)} | {_cell(u.why)} |" for u in spec.unmapped]
        out.append("")
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def as_table(specs: list[Spec], concepts: ConceptIndex, width: int = 200) -> str:
    out: list[str] = []
    for spec in specs:
        out += [f"{spec.title}  [{spec.kind} {spec.exact_version}]", ""]
        current = None
        for row in rows(spec, concepts):
            if row.resource != current:
                current = row.resource
                out += [f"  {row.resource}"]
            arrow = "↔" if row.direction == "both ways" else "→"  # ↔ read back into the record, → sent only
            condition = f"  when {row.condition}" if row.condition else ""
            out.append(f"    {row.source:<34} {arrow} {row.target:<58} {row.transform}{condition}")
            for line in row.terminology:
                out.append(f"{'':<42}{line}"[:width])
            out.append(f"{'':<42}why: {row.why}"[:width])
            if row.direction.startswith("one way: ") and row.direction != "one way: structure":
                out.append(f"{'':<42}{row.direction}"[:width])
        if spec.unmapped:
            out += ["", "  Not mapped"]
            out += [f"    {u.field:<34} {u.why}"[:width] for u in spec.unmapped]
        out.append("")
    return "\n".join(out)


# --- diff ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    kind: str        # added | removed | changed | version | unmapped-added | unmapped-removed
    where: str       # `MedicationAdministration (administration): dose_mg → dosage.dose`
    detail: str


def diff(old: Spec, new: Spec) -> list[Change]:
    """What changed between two versions of one kind's mapping, rule by rule."""
    changes: list[Change] = []
    if old.version != new.version:
        changes.append(Change("version", new.kind, f"{old.version} → {new.version}"))
    before, after = _rule_index(old), _rule_index(new)
    for key in after.keys() - before.keys():
        changes.append(Change("added", key, after[key].why))
    for key in before.keys() - after.keys():
        changes.append(Change("removed", key, before[key].why))
    for key in before.keys() & after.keys():
        was, now = before[key], after[key]
        for name in ("transform", "params", "when", "one_way", "each", "default", "why"):
            a, b = getattr(was, name), getattr(now, name)
            a = a.text if hasattr(a, "text") else a
            b = b.text if hasattr(b, "text") else b
            if a != b:
                changes.append(Change("changed", key, f"{name}: {_show(a)} → {_show(b)}"))
    old_unmapped = {u.field: u.why for u in old.unmapped}
    new_unmapped = {u.field: u.why for u in new.unmapped}
    for name in new_unmapped.keys() - old_unmapped.keys():
        changes.append(Change("unmapped-added", name, new_unmapped[name]))
    for name in old_unmapped.keys() - new_unmapped.keys():
        changes.append(Change("unmapped-removed", name, old_unmapped[name]))
    order = ["version", "removed", "added", "changed", "unmapped-added", "unmapped-removed"]
    return sorted(changes, key=lambda c: (order.index(c.kind), c.where, c.detail))


def _rule_index(spec: Spec) -> dict[str, Rule]:
    out: dict[str, Rule] = {}
    for role in spec.roles:
        for rule in role.rules:
            names = [rule.field] if rule.field else list(rule.fields)
            source = "+".join(field_path(role_base(role), n) for n in names) or "—"
            key = f"{role.type} ({role.role}): {source} → {rule.to}"
            out[key] = rule
    return out


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if not isinstance(value, str) else repr(value)


def render_diff(changes: list[Change]) -> str:
    if not changes:
        return "no changes"
    symbol = {"added": "+", "removed": "-", "changed": "~", "version": "#", "unmapped-added": "+ unmapped",
              "unmapped-removed": "- unmapped"}
    return "\n".join(f"{symbol[c.kind]} {c.where}: {c.detail}" for c in changes)


# --- concept maps --------------------------------------------------------------------------

def concept_maps(mapper: Any) -> list[dict[str, Any]]:
    """Every ConceptMap the loaded mappings use, as the FHIR resources the IG ships."""
    urls: list[str] = []
    for spec in mapper.specs.values():
        for role in spec.roles:
            for rule in role.rules:
                if rule.transform == "concept":
                    for url in mapper.concepts.system(rule.params["map"]).maps:
                        if url not in urls:
                            urls.append(url)
    return [mapper.concepts.defs.resolve(url) for url in sorted(urls)]
