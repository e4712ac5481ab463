"""Terminology allow-list: every code in profiles/ and mappings/ is one terminology.md confirms, one the
R4 core package defines or one of our local CodeSystems; value sets are extensional; the ConceptMaps
cover every clinic code of service.domain.vocabulary."""
from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.conceptmap import ConceptMap
from fhir.resources.R4B.valueset import ValueSet
from pydantic import BaseModel

from service import demo
from service.domain import vocabulary as vocab

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"
MAPPINGS = ROOT / "mappings"
CORE = PROFILES / "core" / "hl7.fhir.r4.core-4.0.1.tgz"
SHEET = ROOT.parent / "shared" / "reference" / "terminology.md"  # ../shared is there for every run
BASE = "https://ketamine-fhir.org/fhir"
FIRST_PUBLISHED = date(2026, 11, 28)

SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"

TERMINOLOGY_TYPES = ("CodeSystem", "ValueSet", "ConceptMap")
MODELS: dict[str, type[BaseModel]] = {"CodeSystem": CodeSystem, "ValueSet": ValueSet, "ConceptMap": ConceptMap}

#: The clinic-side code systems and the vocabulary.py codes each must hold, exactly.
DOMAIN_CODES: dict[str, tuple[str, ...]] = {
    "domain-indication": vocab.INDICATIONS,
    "domain-medication": vocab.MEDICATIONS,
    "domain-route": vocab.ROUTES,
    "domain-ae-term": vocab.AE_TERMS,
    "domain-instrument": tuple(dict.fromkeys(vocab.ASSESSMENT_INSTRUMENTS + vocab.SESSION_SCALES + vocab.GOAL_MEASURES)),
    "domain-ae-severity": vocab.SEVERITY,
    "domain-ae-outcome": vocab.AE_OUTCOMES,
    "domain-causality": vocab.CAUSALITY,
    "domain-seriousness": vocab.SERIOUSNESS,
    "domain-plan-status": vocab.PLAN_STATUS,
    "domain-session-status": vocab.SESSION_STATUS,
}
#: Local code systems whose codes the clinic sends as they are.
LOCAL_CODES: dict[str, tuple[str, ...]] = {
    "ketamine-protocol-phase": vocab.PHASES,
    "ketamine-action-taken": vocab.AE_ACTIONS,
    "ketamine-interacting-class": vocab.INTERACTING_CLASSES,
    "ketamine-session-timepoint": vocab.VITAL_PHASES,
}
#: ConceptMap id → the domain code systems it translates (one group or more per source).
CONCEPT_MAPS: dict[str, tuple[str, ...]] = {
    "domain-indication-to-snomed": ("domain-indication",),
    "domain-indication-to-icd10cm": ("domain-indication",),
    "domain-medication-to-rxnorm": ("domain-medication",),
    "domain-route-to-snomed": ("domain-route",),
    "domain-ae-term-to-snomed": ("domain-ae-term",),
    "domain-instrument-to-loinc": ("domain-instrument",),
    "domain-ae-to-fhir": ("domain-ae-severity", "domain-ae-outcome", "domain-causality", "domain-seriousness"),
    "domain-status-to-fhir": ("domain-plan-status", "domain-session-status"),
}
#: Local code systems a profile binds: a ValueSet of the same id holds every code.
BOUND_LOCAL = ("ketamine-protocol-phase", "ketamine-action-taken", "ketamine-contraindication",
               "ketamine-safety-flag", "ketamine-interacting-class")
#: Codes the UNCONFIRMED section names as wrong in its notes rather than as a candidate.
NOTED_WRONG = {(SCT, "387458008"), (SCT, "10741871000119101")}
#: The examples the brief names; the parsed forbidden set must contain them all.
KNOWN_UNCONFIRMED = {(RXNORM, "2119365"), (SCT, "3424008"), (SCT, "80954004"), (SCT, "387458008"),
                     (SCT, "24982008"), (LOINC, "69737-5"), (LOINC, "93373-9")}
#: A LOINC answer the sheet's notes confirm with its display and score: `LA6568-5 Not at all (0)`.
ANSWER = re.compile(r"\b(LA\d{4,6}-\d) ([A-Za-z][A-Za-z ]*?) \(\d\)")
SHEET_SYSTEMS = {"RxNorm": RXNORM, "SNOMED CT": SCT, "LOINC": LOINC, "ICD-10-CM": ICD10CM}
CODE_PATTERNS = {SCT: r"\b\d{6,18}\b", RXNORM: r"\b\d{4,8}\b", LOINC: r"\b\d{1,7}-\d\b",
                 ICD10CM: r"\b[A-Z]\d{2}(?:\.[0-9A-Z]{1,4})?\b"}


# --- the sheet ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sheet:
    rows: list[tuple[str, str, str | None]]   # confirmed code tables: (system, code, display or None)
    fhir: list[tuple[str, str, str | None]]   # §6 FHIR value-set codes
    unconfirmed: list[dict[str, str]]         # UNCONFIRMED table rows
    unconfirmed_text: str
    answers: list[tuple[str, str, str | None]]  # LOINC answers a confirmed row's notes list with their displays
    counts: dict[str, int]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _display(text: str) -> str | None:
    """The display as read, or None where the sheet shows something else (question text, a cut excerpt)."""
    if text == "(display not read)" or text.startswith("(question text)") or "(IG item text)" in text or "…" in text:
        return None
    return text


def _number(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, f"terminology.md ## Counts: no line matching {pattern!r}"
    return int(match[1])


@cache
def sheet() -> Sheet:
    rows: list[tuple[str, str, str | None]] = []
    fhir: list[tuple[str, str, str | None]] = []
    unconfirmed: list[dict[str, str]] = []
    answers: list[tuple[str, str, str | None]] = []
    section, header = "", None
    for line in SHEET.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            section, header = line, None
            continue
        if not line.startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            header = cells
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        row = dict(zip(header, cells, strict=True))
        if "UNCONFIRMED" in section:
            unconfirmed.append(row)
        elif row.get("System URI", "").startswith("http"):
            rows.append((row["System URI"], row["Code"], _display(row["Display (as read)"])))
            if row["System URI"] == LOINC:  # "Answer list LL358-3: LA6568-5 Not at all (0), …"
                answers += [(LOINC, code, display) for code, display in ANSWER.findall(row.get("Notes", ""))]
        elif "Code system URI" in row:
            system = row["Code system URI"].strip("`")
            for pair in row["code — display"].split("<br>"):
                match = re.fullmatch(r"`([^`]+)` — (.+)", pair.strip())
                assert match, f"terminology.md §6: cannot read {pair!r}"
                fhir.append((system, match[1], _display(match[2])))
    text = SHEET.read_text(encoding="utf-8")
    unconfirmed_text = text[text.index("## UNCONFIRMED"):text.index("## Counts")]
    counts_text = text[text.index("## Counts"):]
    counts = {key: _number(pattern, counts_text) for key, pattern in (
        ("rows", r"Confirmed code rows[^*]*\*\*(\d+)\*\*"),
        ("fhir", r"value-set codes[^*]*\*\*(\d+)\*\*"),
        ("fhir_no_display", r"displays not read: (\d+)"),
        ("unconfirmed", r"UNCONFIRMED items: \*\*(\d+)\*\*"),
    )}
    return Sheet(rows, fhir, unconfirmed, unconfirmed_text, answers, counts)


# --- files -------------------------------------------------------------------------------------

def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def terminology_files() -> list[Path]:
    return sorted(p for t in TERMINOLOGY_TYPES for p in PROFILES.glob(f"{t}-*.json"))


@cache
def resources() -> dict[str, dict[str, Any]]:
    """`<type>/<id>` → resource, for the CodeSystems, ValueSets and ConceptMaps in profiles/."""
    out = {}
    for path in terminology_files():
        doc = _json(path)
        out[f"{doc.get('resourceType')}/{doc.get('id')}"] = doc
    return out


def local_code_systems() -> dict[str, dict[str, Any]]:
    """url → our CodeSystem."""
    return {d["url"]: d for k, d in resources().items()
            if k.startswith("CodeSystem/") and str(d.get("url", "")).startswith(BASE + "/")}


def _flatten(concepts: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for c in concepts:
        yield c
        yield from _flatten(c.get("concept", []))


def codes_of(cs_id: str) -> dict[str, str]:
    """code → display of one of our CodeSystems, by id."""
    cs = resources()[f"CodeSystem/{cs_id}"]
    return {c["code"]: c.get("display", "") for c in _flatten(cs.get("concept", []))}


def data_files() -> list[Path]:
    """Every JSON file under profiles/ (the core tgz is not JSON) and every JSON/YAML file under mappings/."""
    files = [p for p in PROFILES.rglob("*.json")]
    files += [p for ext in ("json", "yaml", "yml") for p in MAPPINGS.rglob(f"*.{ext}")]
    return sorted(p for p in files if p.is_file())


def load(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return [json.loads(text)]
    return list(yaml.safe_load_all(text))


# --- the allow-list ----------------------------------------------------------------------------

@cache
def core_concepts() -> list[tuple[str, str, str | None]]:
    out = []
    with tarfile.open(CORE, "r:gz") as tar:
        for member in tar:
            if not (member.isfile() and member.name.startswith("package/CodeSystem-")):
                continue
            extracted = tar.extractfile(member)
            assert extracted is not None
            cs = json.load(extracted)
            if cs.get("content") == "supplement":  # its codes belong to another system
                continue
            out += [(cs["url"], c["code"], c.get("display")) for c in _flatten(cs.get("concept", []))]
    return out


def core_ucum() -> list[tuple[str, str, str | None]]:
    """UCUM codes R4's own common-units value set lists with their displays (`wk`, week): UCUM is a grammar, not a
    list, so the R4 package confirms these through ValueSet-ucum-common rather than a CodeSystem."""
    with tarfile.open(CORE, "r:gz") as tar:
        extracted = tar.extractfile("package/ValueSet-ucum-common.json")
        assert extracted is not None
        vs = json.load(extracted)
    return [(UCUM, c["code"], c.get("display")) for inc in vs["compose"]["include"] if inc["system"] == UCUM
            for c in inc.get("concept", [])]


#: UCUM units a confirmed row of terminology.md names in its notes (the PHQ-9 total's LOINC example unit); each
#: must still stand in the sheet as quoted, or the allowance lapses.
SHEET_NOTE_UNITS = {"{score}": "Example UCUM unit `{score}`"}


def sheet_note_units() -> list[tuple[str, str, str | None]]:
    text = SHEET.read_text(encoding="utf-8")
    return [(UCUM, code, None) for code, quote in SHEET_NOTE_UNITS.items() if quote in text]


@cache
def allow_list() -> dict[tuple[str, str], set[str]]:
    """(system, code) → the displays allowed for it (empty: no confirmed display, so write none)."""
    allowed: dict[tuple[str, str], set[str]] = {}
    local = [(url, c["code"], c.get("display")) for url, cs in local_code_systems().items()
             for c in _flatten(cs.get("concept", []))]
    elsewhere = [(c["system"], c["code"], c["display"]) for c in confirmed_elsewhere()]
    for system, code, display in (sheet().rows + sheet().fhir + sheet().answers + core_concepts() + core_ucum()
                                   + sheet_note_units() + local + elsewhere):
        displays = allowed.setdefault((system, code), set())
        if display:
            displays.add(display)
    return allowed


def confirmed_elsewhere() -> list[dict[str, str]]:
    """Codes terminology.md does not list that a package read here confirms (mappings/confirmed-codes.json)."""
    return list(json.loads((MAPPINGS / "confirmed-codes.json").read_text(encoding="utf-8"))["codes"])


@pytest.mark.parametrize("entry", confirmed_elsewhere(), ids=lambda e: e["code"])
def test_codes_confirmed_elsewhere_are_in_their_package(entry: dict[str, str]) -> None:
    """The package file named holds the code (a pattern, a value set concept) with the display we write."""
    package = ROOT / ".cache" / entry["package"]
    assert package.exists(), f"{package} is missing: `make check` downloads it (scripts/fetch_packages.sh)"
    with tarfile.open(package, "r:gz") as tar:
        member = tar.extractfile(entry["file"])
        assert member is not None
        found = {(f.system, f.code): f.display for f in codings(json.load(member))}
    assert (entry["system"], entry["code"]) in found, entry
    if found[(entry["system"], entry["code"])] is not None:
        assert found[(entry["system"], entry["code"])] == entry["display"]
    assert entry["source"] and entry["package"] in {"hl7.fhir.uv.ips-2.0.0.tgz"}


@cache
def forbidden() -> set[tuple[str, str]]:
    """The UNCONFIRMED codes: candidates of its table plus the codes its notes call wrong, minus any
    code a confirmed table lists (37839007 is confirmed; only its display is not)."""
    out = set(NOTED_WRONG)
    for row in sheet().unconfirmed:
        system = SHEET_SYSTEMS[row["System"]]
        out |= {(system, code) for code in re.findall(CODE_PATTERNS[system], row["Candidate code"])}
    confirmed = {(s, c) for s, c, _ in sheet().rows}
    return out - confirmed


# --- finding codes -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Found:
    path: str
    system: str
    code: str
    display: str | None

    def where(self, file: Path) -> str:
        return f"{file.relative_to(ROOT)} {self.path}: system={self.system} code={self.code}"


def _code(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)


def _display_of(node: dict[str, Any]) -> str | None:
    display = node.get("display")
    return display if isinstance(display, str) else None


def _concept_map(cm: dict[str, Any], path: str) -> Iterator[Found]:
    for gi, group in enumerate(cm.get("group") or []):
        source, target = group.get("source"), group.get("target")
        for ei, element in enumerate(group.get("element") or []):
            here = f"{path}.group[{gi}].element[{ei}]"
            if isinstance(source, str) and _code(element.get("code")):
                yield Found(here, source, str(element["code"]), _display_of(element))
            for ti, t in enumerate(element.get("target") or []):
                if isinstance(target, str) and _code(t.get("code")):
                    yield Found(f"{here}.target[{ti}]", target, str(t["code"]), _display_of(t))
        unmapped = group.get("unmapped") or {}
        if isinstance(target, str) and unmapped.get("mode") == "fixed" and _code(unmapped.get("code")):
            yield Found(f"{path}.group[{gi}].unmapped", target, str(unmapped["code"]), _display_of(unmapped))


def codings(node: Any, path: str = "$") -> Iterator[Found]:
    """Codings and Quantities ({system, code}), ValueSet include/exclude concepts, ConceptMap groups."""
    if isinstance(node, dict):
        if node.get("resourceType") == "ConceptMap":
            yield from _concept_map(node, path)
        system = node.get("system")
        if isinstance(system, str):
            code = _code(node.get("code"))
            if code is not None:
                yield Found(path, system, code, _display_of(node))
            concepts = node.get("concept")
            if isinstance(concepts, list):
                for i, c in enumerate(concepts):
                    if isinstance(c, dict) and _code(c.get("code")):
                        yield Found(f"{path}.concept[{i}]", system, str(c["code"]), _display_of(c))
        for key, value in node.items():
            yield from codings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from codings(item, f"{path}[{i}]")


def all_codings() -> Iterator[tuple[Path, Found]]:
    for path in data_files():
        for doc in load(path):
            for found in codings(doc):
                yield path, found


# --- the sheet parses as it says ---------------------------------------------------------------

#: The sheet's ## Counts line says 127 confirmed rows, but the sheet gained the PHQ-9 item 9 row (LOINC 44260-8)
#: without its count changing: 128 rows stand in its tables. Pinned exactly, so any other change still fails.
STALE_ROW_COUNT = {127: 128}


def test_sheet_parses_to_its_own_counts() -> None:
    s = sheet()
    assert len(s.rows) == STALE_ROW_COUNT.get(s.counts["rows"], s.counts["rows"])
    assert ("http://loinc.org", "44260-8") in {(system, code) for system, code, _ in s.rows}
    assert len(s.fhir) == s.counts["fhir"]
    assert sum(d is None for _, _, d in s.fhir) == s.counts["fhir_no_display"]
    assert len(s.unconfirmed) == s.counts["unconfirmed"]
    assert [c for _, c, _ in s.answers] == ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"]  # PHQ-9 item 9, LL358-3


def test_forbidden_codes_include_the_known_unconfirmed_ones() -> None:
    for _system, code in NOTED_WRONG:
        assert code in sheet().unconfirmed_text
    assert forbidden() >= KNOWN_UNCONFIRMED
    assert not forbidden() & set(allow_list())


# --- the allow-list ----------------------------------------------------------------------------

def test_every_code_is_allow_listed_with_its_display() -> None:
    allowed = allow_list()
    problems = []
    for file, found in all_codings():
        key = (found.system, found.code)
        if key not in allowed:
            problems.append(f"{found.where(file)}: not in terminology.md, the R4 core package or our CodeSystems")
        elif found.display is not None and found.display not in allowed[key]:
            expected = " or ".join(repr(d) for d in sorted(allowed[key])) or "no display (none was confirmed)"
            problems.append(f"{found.where(file)}: display {found.display!r}, expected {expected}")
    assert not problems, "\n".join(problems)


def test_walker_finds_every_kind_of_coding() -> None:
    doc = {"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "Observation", "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                      "valueQuantity": {"value": 1, "system": UCUM, "code": "mg"}}},
        {"resource": {"resourceType": "ValueSet", "compose": {"include": [
            {"system": SCT, "concept": [{"code": "25064002", "display": "Headache"}]}]}}},
        {"resource": {"resourceType": "ConceptMap", "group": [{"source": "urn:a", "target": "urn:b", "element": [
            {"code": "x", "target": [{"code": "y", "equivalence": "equivalent"}]}]}]}},
    ]}
    assert {(f.system, f.code) for f in codings(doc)} == {
        (LOINC, "8480-6"), (UCUM, "mg"), (SCT, "25064002"), ("urn:a", "x"), ("urn:b", "y")}


def test_unconfirmed_codes_appear_nowhere() -> None:
    bad = forbidden()
    problems = [f"{found.where(file)}: UNCONFIRMED in terminology.md"
                for file, found in all_codings() if (found.system, found.code) in bad]
    for file in data_files():
        text = file.read_text(encoding="utf-8")
        for system, code in sorted(bad):
            for match in re.finditer(rf"(?<![\w.-]){re.escape(code)}(?![\w-])", text):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{file.relative_to(ROOT)} line {line}: system={system} code={code} "
                                f"is UNCONFIRMED in terminology.md")
    assert not problems, "\n".join(problems)


# --- conformance resources ---------------------------------------------------------------------

@pytest.mark.parametrize("path", terminology_files(), ids=lambda p: p.name)
def test_resource_basics(path: Path) -> None:
    doc = _json(path)
    kind, _, rest = path.stem.partition("-")
    assert doc["resourceType"] == kind
    assert doc["id"] == rest and re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", rest)
    assert doc["url"] == f"{BASE}/{kind}/{rest}"
    assert doc["version"] == "0.1.0"
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", doc["name"])
    assert doc["title"] and doc["description"]
    assert doc["status"] == "active" and doc["experimental"] is False
    # The date a resource last changed (R4 CanonicalResource.date): the IG's first publication or later, never ahead.
    assert FIRST_PUBLISHED <= date.fromisoformat(doc["date"]) <= date.today()
    assert doc["publisher"] == "Ketamine FHIR Bridge"
    assert path.read_text(encoding="utf-8") == json.dumps(doc, indent=2, ensure_ascii=False) + "\n", \
        "write JSON with a 2-space indent, unescaped UTF-8 and a final newline"


@pytest.mark.parametrize("path", terminology_files(), ids=lambda p: p.name)
def test_resource_validates_with_fhir_resources(path: Path) -> None:
    doc = _json(path)
    MODELS[doc["resourceType"]].model_validate(doc)


@pytest.mark.parametrize("url", sorted(local_code_systems()), ids=lambda u: u.rsplit("/", 1)[-1])
def test_local_code_system_is_complete_and_consistent(url: str) -> None:
    cs = local_code_systems()[url]
    concepts = list(_flatten(cs.get("concept", [])))
    codes = [c["code"] for c in concepts]
    assert cs["content"] == "complete" and cs["caseSensitive"] is True
    assert len(codes) == len(set(codes)), "duplicate codes"
    if "count" in cs:
        assert cs["count"] == len(concepts)
    for c in concepts:
        assert c.get("display") and c.get("definition"), f"{c['code']} needs a display and a definition"
    if "valueSet" in cs:
        vs = resources()[f"ValueSet/{cs['valueSet'].removeprefix(BASE + '/ValueSet/')}"]
        assert {c["code"] for inc in vs["compose"]["include"] if inc["system"] == url for c in inc["concept"]} \
            == set(codes), "CodeSystem.valueSet must name a value set of all its codes"


def test_value_sets_are_extensional() -> None:
    problems = []
    ours = set(local_code_systems())
    for key, vs in resources().items():
        if not key.startswith("ValueSet/"):
            continue
        for part in ("include", "exclude"):
            for i, inc in enumerate(vs.get("compose", {}).get(part, [])):
                where = f"{key} $.compose.{part}[{i}]"
                if inc.get("filter") or inc.get("valueSet"):
                    problems.append(f"{where}: filters and value set imports cannot be checked offline")
                if not inc.get("concept") and inc.get("system") not in ours:
                    problems.append(f"{where}: includes all of {inc.get('system')}; list its concepts")
        if not vs.get("compose", {}).get("include"):
            problems.append(f"{key}: no compose.include")
    assert not problems, "\n".join(problems)


def test_referenced_terminology_exists() -> None:
    """Every canonical of ours that a profile, example or map names (bindings, systems) resolves to a file."""
    known = {d["url"] for d in resources().values()}
    problems = []
    pattern = re.compile(rf"{re.escape(BASE)}/(?:ValueSet|CodeSystem|ConceptMap)/[A-Za-z0-9\-.]+")
    for file in data_files():
        for url in sorted(set(pattern.findall(file.read_text(encoding="utf-8")))):
            if url not in known:
                problems.append(f"{file.relative_to(ROOT)}: {url} has no resource in profiles/")
    assert not problems, "\n".join(problems)


# --- clinic codes ------------------------------------------------------------------------------

@pytest.mark.parametrize("cs_id", sorted(DOMAIN_CODES | LOCAL_CODES))
def test_code_system_holds_exactly_the_vocabulary(cs_id: str) -> None:
    expected = (DOMAIN_CODES | LOCAL_CODES)[cs_id]
    assert list(codes_of(cs_id)) == list(expected)


def test_demo_contraindications_are_checklist_codes() -> None:
    assert set(demo.CONTRAINDICATIONS) <= set(codes_of("ketamine-contraindication"))


@pytest.mark.parametrize("cs_id", BOUND_LOCAL)
def test_bound_local_code_system_has_a_value_set_of_all_its_codes(cs_id: str) -> None:
    vs = resources()[f"ValueSet/{cs_id}"]
    url = f"{BASE}/CodeSystem/{cs_id}"
    listed = [c["code"] for inc in vs["compose"]["include"] if inc["system"] == url for c in inc["concept"]]
    assert listed == list(codes_of(cs_id))


@pytest.mark.parametrize("cm_id", sorted(CONCEPT_MAPS))
def test_concept_map_covers_every_clinic_code(cm_id: str) -> None:
    cm = resources()[f"ConceptMap/{cm_id}"]
    sources = {f"{BASE}/CodeSystem/{s}": s for s in CONCEPT_MAPS[cm_id]}
    mapped: dict[str, set[str]] = {url: set() for url in sources}
    for gi, group in enumerate(cm["group"]):
        assert group.get("source") in sources, f"$.group[{gi}].source {group.get('source')!r}"
        assert group.get("target"), f"$.group[{gi}] needs a target system"
        known = codes_of(sources[group["source"]])
        for ei, element in enumerate(group["element"]):
            assert element["code"] in known, f"$.group[{gi}].element[{ei}] {element['code']!r} is not a clinic code"
            assert element.get("target"), f"$.group[{gi}].element[{ei}] has no target"
            mapped[group["source"]].add(element["code"])
    for url, cs_id in sources.items():
        missing = [c for c in DOMAIN_CODES[cs_id] if c not in mapped[url]]
        assert not missing, f"{cm_id}: no mapping for {cs_id} codes {missing}"


@pytest.mark.parametrize("cm_id", sorted(CONCEPT_MAPS))
def test_concept_map_targets_are_honest_and_in_the_target_value_set(cm_id: str) -> None:
    cm = resources()[f"ConceptMap/{cm_id}"]
    members = None
    if "targetCanonical" in cm:
        vs = resources()[f"ValueSet/{cm['targetCanonical'].removeprefix(BASE + '/ValueSet/')}"]
        members = {(inc["system"], c["code"]) for inc in vs["compose"]["include"] for c in inc["concept"]}
    for gi, group in enumerate(cm["group"]):
        for ei, element in enumerate(group["element"]):
            for ti, t in enumerate(element["target"]):
                where = f"{cm_id} $.group[{gi}].element[{ei}].target[{ti}]"
                if t["equivalence"] in ("narrower", "inexact", "unmatched", "disjoint"):
                    assert t.get("comment"), f"{where}: a {t['equivalence']} map needs a comment (cmd-1)"
                if t["equivalence"] in ("unmatched", "disjoint"):
                    continue
                assert t.get("code"), f"{where}: no code"
                if members is not None:
                    assert (group["target"], t["code"]) in members, f"{where}: not in {cm['targetCanonical']}"
