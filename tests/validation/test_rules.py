"""Rules the HL7 validator applies that no StructureDefinition states, and false errors it does not make: each
case fails for the one thing broken and passes without it (R4 text and the HL7 validator's check cited)."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
from typing import Any

import pytest

from service.conformance.definitions import load
from service.fhirjson import Finding
from service.validation.bundles import ABSOLUTE, _ends_with_type_and_id
from service.validation.engine import Validator
from service.validation.policy import ValidationPolicy
from service.validation.references import LITERAL_REFERENCE
from service.validation.run import Run

NARRATIVE = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(load())


def errors(validator: Validator, resource: dict[str, Any]) -> list[Finding]:
    return [f for f in validator.validate(resource) if f.severity in ("error", "fatal")]


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "text": NARRATIVE, **extra}


def observation(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o1", "text": NARRATIVE, "status": "final", "code": {"text": "x"},
            **extra}


def bundle(kind: str, *entries: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "id": "b1", "type": kind, **({"entry": list(entries)} if entries else {}),
            **extra}


# --- Bundle: fullUrl (R4 Bundle.entry.fullUrl: "an absolute URL"; BUNDLE_ENTRY_URL_ABSOLUTE) -----------------

@pytest.mark.parametrize("full_url, ok", [
    ("http://example.com/fhir/Patient/p1", True), ("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", True),
    ("urn:oid:1.2.3", True), ("Patient/p1", False), ("p1", False),
    ("http://example.com/fhir/Patient/p2", False),   # a RESTful URL naming another id
])
def test_full_url_is_absolute_and_names_its_resource(validator: Validator, full_url: str, ok: bool) -> None:
    found = errors(validator, bundle("collection", {"fullUrl": full_url, "resource": patient()}))
    assert (found == []) == ok, found


#: fullUrl forms that tell the string tests of bundles._full_url from the regexes they stand in for
FULL_URLS = ["", "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", "urn:oid:1.2.3", "urn:uuid:X", "urn:x", "Patient/p1",
             "/Patient/p1", "p1", "mailto:a@b.c", "1http://x", " http://x.org/Patient/p1", "HTTP://x.org/fhir/Patient/p1",
             "ftp://x.org/fhir/Patient/p1", "http://x.org/fhir/Patient/p1", "https://x.org/fhir/Patient/p1",
             "http://x.org/fhir/Patient/p2", "http://x.org/fhir/Observation/p1", "http://x.org/fhir/patient/p1",
             "http://x.org/fhir/Patient/p1/_history/2", "http://x.org/fhir/Patient/p1/_history/",
             "http://x.org/fhir/Patient/_history/2", "http://x.org/fhir/Patient/p1\n", "http://x.org/fhir/Patient/p1?a=1",
             "http://x.org/fhir/Patient/a/b", "http://x.org/fhir/Patient/Ab/p1", "http://x.org/fhir/Ab/Patient/p1", "http://x.org/fhir/Patient/" + "a" * 65,
             "http://x.org/Patient/p1#f", "http://Patient/p1", "https:Patient/p1"]
#: the entry's resource: its resourceType and id as they come (the RESTful comparison reads both)
RESOURCES = [None, "text", {}, {"resourceType": "Patient"}, {"resourceType": "Patient", "id": "p1"},
             {"resourceType": "Patient", "id": "p1\n"}, {"resourceType": "Patient", "id": "a/b"}, {"resourceType": "Patient", "id": "Ab/p1"},
             {"resourceType": "Patient", "id": "p2"}, {"resourceType": "_history", "id": "2"},
             {"resourceType": "Patient", "id": 1}, {"resourceType": "Ab/Patient", "id": "p1"},
             {"resourceType": "Patient", "id": ""}, {"resourceType": "Patient", "id": "a" * 65}]


def _full_url_by_regexes(entry: dict[str, Any], expr: str) -> list[tuple[str, str]]:
    """The fullUrl rule as written before its string tests: ABSOLUTE, then LITERAL_REFERENCE, on every entry."""
    full_url, resource = entry.get("fullUrl"), entry.get("resource")
    if not isinstance(full_url, str) or not full_url:
        return []
    if not ABSOLUTE.match(full_url):
        return [(f"{expr}.fullUrl", f"fullUrl {full_url!r} must be an absolute URL (or a urn:uuid: / urn:oid:), not "
                                    f"a relative one.")]
    match = LITERAL_REFERENCE.match(full_url)
    if match and match.group(2) and isinstance(resource, dict) \
            and (match.group(3), match.group(4)) != (resource.get("resourceType"), resource.get("id")):
        return [(f"{expr}.fullUrl", f"fullUrl {full_url} does not match the resource's type and id "
                                    f"({resource.get('resourceType')}/{resource.get('id')}).")]
    return []


def test_full_url_string_tests_say_what_the_regexes_say(validator: Validator) -> None:
    """Every fullUrl form with every resource shape, in one Bundle: the Bundle's fullUrl findings are those of the
    two regexes applied to each entry, and the fast forms (http(s) URLs ending with the type and id) take part."""
    entries = [{"fullUrl": url, **({} if res is None else {"resource": res})} for url in FULL_URLS for res in RESOURCES]
    run = Run({})
    validator._bundle(bundle("collection", *entries), "Bundle", run, [])
    found = [(f.expression, f.message) for f in run.findings if "fullUrl" in f.message]
    expected = [hit for i, entry in enumerate(entries) for hit in _full_url_by_regexes(entry, f"Bundle.entry[{i}]")]
    assert found == expected
    assert len(expected) > 100  # both findings, on many forms
    assert any("does not match" in m for _, m in expected) and any("absolute" in m for _, m in expected)
    assert sum(1 for e in entries if isinstance(e.get("resource"), dict)
               and _ends_with_type_and_id(e["fullUrl"], e["resource"])) >= 4


# --- Bundle: link relations at most once (BUNDLE_LINK_SEARCH_NO_DUPLICATES) ------------------------------------

def test_a_link_relation_appears_at_most_once(validator: Validator) -> None:
    once = [{"relation": "self", "url": "http://x/fhir/Patient"}, {"relation": "next", "url": "http://x/fhir/p2"}]
    twice = [*once, {"relation": "self", "url": "http://x/fhir/Patient?a=b"}]
    assert errors(validator, bundle("searchset", link=once)) == []
    assert any("more than once" in f.message for f in errors(validator, bundle("searchset", link=twice)))


def test_a_document_has_no_paging_links(validator: Validator) -> None:
    doc = document(link=[{"relation": "next", "url": "http://x/fhir/p2"}])
    assert any("'next' link" in f.message for f in errors(validator, doc))


# --- Bundle: search set entries (BUNDLE_SEARCH_ENTRY_NO_RESOURCE_ID, ..._WRONG_RESOURCE_TYPE_MODE) -------------

def search_entry(resource: dict[str, Any], mode: str = "match") -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{hashlib.md5(str(resource).encode()).hexdigest()[:8]}-0000-4000-8000-"  # noqa: S324
                       "000000000000", "resource": resource, "search": {"mode": mode}}


def test_search_set_matches_have_ids_and_the_searched_type(validator: Validator) -> None:
    link = [{"relation": "self", "url": "http://x/fhir/Patient?name=x"}]
    good = bundle("searchset", search_entry(patient()), search_entry(observation(), "include"), link=link)
    assert errors(validator, good) == []
    no_id = {k: v for k, v in patient().items() if k != "id"}
    assert any("must have a resource id" in f.message
               for f in errors(validator, bundle("searchset", search_entry(no_id), link=link)))
    assert any("not what was searched for" in f.message
               for f in errors(validator, bundle("searchset", search_entry(observation()), link=link)))


# --- Bundle: references a document resolves inside itself (R4 documents.html) ---------------------------------

def document(*more: dict[str, Any], section_ref: str = "Observation/o1", **extra: Any) -> dict[str, Any]:
    composition = {"resourceType": "Composition", "id": "c1", "text": NARRATIVE, "status": "final",
                   "type": {"text": "note"}, "date": "2026-01-01", "title": "t", "subject": {"reference": "Patient/p1"},
                   "author": [{"reference": "Patient/p1"}],
                   "section": [{"title": "s", "text": NARRATIVE, "entry": [{"reference": section_ref}]}]}
    base = "http://example.com/fhir/"
    entries = [{"fullUrl": base + "Composition/c1", "resource": composition},
               {"fullUrl": base + "Patient/p1", "resource": patient()},
               {"fullUrl": base + "Observation/o1", "resource": observation()}, *more]
    return bundle("document", *entries, identifier={"system": "urn:ietf:rfc:3986", "value": "urn:uuid:1"},
                  timestamp="2026-01-01T00:00:00Z", **extra)


def test_a_documents_section_entries_are_in_the_bundle(validator: Validator) -> None:
    assert errors(validator, document()) == []
    assert any("is not in the document" in f.message for f in errors(validator, document(section_ref="Observation/x")))


def test_a_reference_matching_several_entries_is_an_error(validator: Validator) -> None:
    other = {"fullUrl": "http://elsewhere.example.com/fhir/Observation/o1", "resource": observation()}
    doc = document(other)
    doc["entry"][0]["fullUrl"] = "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"  # no base to resolve against
    assert any("matches 2 entries" in f.message for f in errors(validator, doc))


def test_a_versioned_reference_names_that_version(validator: Validator) -> None:
    versioned = document(section_ref="Observation/o1/_history/2")
    assert any("is not in the document" in f.message for f in errors(validator, versioned))
    versioned["entry"][2]["resource"]["meta"] = {"versionId": "2"}
    assert errors(validator, versioned) == []


# --- Reference target types (R4 references.html: "the reference SHALL be to a resource of one of the listed types";
# the HL7 validator checks the type of a target it resolves, or of any with -assume-valid-rest-references) ----------

def performer(reference: str, **extra: Any) -> dict[str, Any]:
    """An Observation whose performer (CareTeam, Organization, Patient, Practitioner, PractitionerRole or
    RelatedPerson) is `reference`."""
    return observation(performer=[{"reference": reference, **extra}])


def type_errors(validator: Validator, resource: dict[str, Any], **policy: Any) -> list[str]:
    return [f.expression for f in validator.validate(resource, policy=ValidationPolicy(**policy))
            if f.severity == "error" and "type" in f.message]


def test_a_target_type_is_checked_where_it_resolves_or_when_asked(validator: Validator) -> None:
    unresolved = performer("Encounter/e1")
    assert type_errors(validator, unresolved) == []  # the HL7 CLI's default
    assert type_errors(validator, unresolved, assume_valid_rest_references=True) == \
        ["Observation.performer[0].reference"]
    assert type_errors(validator, unresolved, **dataclasses.asdict(ValidationPolicy.store())) == \
        ["Observation.performer[0].reference"]
    encounter = {"resourceType": "Encounter", "id": "e1", "text": NARRATIVE, "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}
    held = bundle("collection", {"fullUrl": "http://example.com/fhir/Observation/o1", "resource": unresolved},
                  {"fullUrl": "http://example.com/fhir/Encounter/e1", "resource": encounter})
    assert type_errors(validator, held) == ["Bundle.entry[0].resource.performer[0].reference"]
    assert type_errors(validator, performer("Practitioner/x")) == []


def test_a_declared_reference_type_is_checked_resolved_or_not(validator: Validator) -> None:
    assert type_errors(validator, performer("Encounter/e1", type="Encounter")) == [
        "Observation.performer[0].type"]
    assert type_errors(validator, performer("Patient/p1", type="Practitioner")) == [
        "Observation.performer[0].reference"]
    assert type_errors(validator, performer("Practitioner/x", type="Practitioner")) == []
    assert type_errors(validator, performer("Practitioner/x", type="http://example.org/Model")) == []


def test_a_urn_reference_remembered_clean_by_the_type_it_names_is_judged_as_a_fresh_validator_would() -> None:
    """A urn: reference found with nothing to say is remembered by its element's targets, its declared type and the
    type of the entry it names, not its text: a Bundle's entries change names, not types (references.py)."""
    def entries(target: dict[str, Any], **extra: Any) -> dict[str, Any]:
        urn = f"urn:uuid:0c3151bd-1cbf-4d64-b04d-{len(seen):012x}"
        seen.append(urn)
        return bundle("collection", {"fullUrl": urn, "resource": target},
                      {"fullUrl": f"urn:uuid:9c3151bd-1cbf-4d64-b04d-{len(seen):012x}",
                       "resource": performer(urn, **extra)})
    seen: list[str] = []
    practitioner = {"resourceType": "Practitioner", "id": "x", "text": NARRATIVE}
    encounter = {"resourceType": "Encounter", "id": "e1", "text": NARRATIVE, "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}
    docs = [entries(practitioner), entries(practitioner), entries(encounter), entries(practitioner, type="Patient"),
            entries(practitioner, type="Practitioner"), entries(encounter, type="Practitioner"),
            performer("urn:uuid:0c3151bd-1cbf-4d64-b04d-0000000000ff"), entries(practitioner)]
    remembering = Validator(load())
    found = [[(f.severity, f.expression, f.message) for f in remembering.validate(doc)] for doc in docs]
    for doc, expected in zip(docs, found, strict=True):
        assert [(f.severity, f.expression, f.message) for f in Validator(load()).validate(doc)] == expected
    assert [len([f for f in one if "type" in f[2]]) for one in found] == [0, 0, 1, 1, 0, 2, 0, 0]
    assert any(len(key) == 4 and "Practitioner" in key for key in remembering._references_clean)


# --- elements -----------------------------------------------------------------------------------------------

def attachment(data: bytes, **extra: Any) -> dict[str, Any]:
    return {"contentType": "text/plain", "data": base64.b64encode(data).decode(), **extra}


@pytest.mark.parametrize("extra, ok", [
    ({"size": 5}, True), ({"size": 6}, False),
    ({"hash": base64.b64encode(hashlib.sha1(b"hello").digest()).decode()}, True),  # noqa: S324
    ({"hash": base64.b64encode(hashlib.sha1(b"other").digest()).decode()}, False),  # noqa: S324
])
def test_attachment_size_and_hash_are_those_of_its_data(validator: Validator, extra: dict[str, Any], ok: bool) -> None:
    found = errors(validator, patient(photo=[attachment(b"hello", **extra)]))
    assert (found == []) == ok, found


@pytest.mark.parametrize("system, fragment", [
    ("loinc", "absolute reference"),                                         # TERMINOLOGY_TX_SYSTEM_RELATIVE
    ("http://hl7.org/fhir/ValueSet/administrative-gender", "is a value set"),  # TERMINOLOGY_TX_SYSTEM_VALUESET2
    ("http://hl7.org/fhir/no-such-system", "not a code system FHIR defines"),  # TERMINOLOGY_TX_SYSTEM_UNKNOWN
    ("http://loinc.org/8867-4", "is not a code system"),                     # TERMINOLOGY_TX_SYSTEM_INVALID
])
def test_coding_system_is_an_absolute_code_system(validator: Validator, system: str, fragment: str) -> None:
    ok = observation(code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}]})
    assert errors(validator, ok) == []
    bad = observation(code={"coding": [{"system": system, "code": "8867-4"}]})
    assert any(fragment in f.message for f in errors(validator, bad)), errors(validator, bad)


def test_a_string_over_1_mb_is_an_error(validator: Validator) -> None:
    """R4 datatypes §string: "strings SHALL NOT exceed 1MB (1024*1024 characters) in size"."""
    assert errors(validator, patient(name=[{"family": "x" * (1024 * 1024)}])) == []
    found = errors(validator, patient(name=[{"family": "x" * (1024 * 1024 + 1)}]))
    assert any("longer than 1,048,576" in f.message for f in found)
    assert all(len(f.message) < 400 for f in found)  # the value is not quoted whole


def test_references_within_parameters_and_bundle_entries_resolve_in_their_own_resource(validator: Validator) -> None:
    """ref-1 uses %rootResource: for a resource in Parameters.parameter.resource or Bundle.entry.resource, that
    resource itself, not the Parameters or Bundle."""
    inner = observation(contained=[{"resourceType": "Patient", "id": "p"}], subject={"reference": "#p"})
    assert errors(validator, {"resourceType": "Parameters", "parameter": [{"name": "r", "resource": inner}]}) == []
    assert errors(validator, bundle("collection", {"fullUrl": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0",
                                                   "resource": inner})) == []
    broken = observation(contained=[{"resourceType": "Patient", "id": "p"}], subject={"reference": "#q"})
    assert any("ref-1" in f.message for f in
               errors(validator, {"resourceType": "Parameters", "parameter": [{"name": "r", "resource": broken}]}))


def test_dom_3_counts_a_reference_from_another_contained_resource(validator: Validator) -> None:
    """dom-3 looks in %resource.descendants(): a contained resource referred to by another contained one is
    referred to from the resource."""
    contained = [{"resourceType": "Practitioner", "id": "doc"},
                 {"resourceType": "PractitionerRole", "id": "role", "practitioner": {"reference": "#doc"}}]
    ok = observation(contained=contained, performer=[{"reference": "#role"}])
    assert errors(validator, ok) == []
    orphan = observation(contained=contained)
    assert any("dom-3" in f.message for f in errors(validator, orphan))


def test_a_contained_id_over_64_characters_is_a_warning(validator: Validator) -> None:
    long_id = "a" * 65
    resource = observation(contained=[{"resourceType": "Patient", "id": long_id}],
                           subject={"reference": f"#{long_id}"})
    findings = validator.validate(resource)
    assert [f.severity for f in findings if "longer than 64" in f.message] == ["warning"]
    assert [f for f in findings if f.severity == "error"] == []
    assert any(f.severity == "error" for f in validator.validate(patient(id=long_id)))


# --- found by the agreement corpus (test_hapi_agreement.py): each with the R4 text in its finding's module -----

@pytest.mark.parametrize("good, bad, fragment", [
    (patient(), patient(text={"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"> </div>"}),
     "txt-2"),
    (patient(), patient(text={"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x"
                                                            "<img src=\"#nope\"/></div>"}), "Image source '#nope'"),
    (patient(identifier=[{"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3"}]),
     patient(identifier=[{"system": "urn:ietf:rfc:3986", "value": "1.2.3"}]), "full URI"),
    (patient(gender="male"), patient(gender="male\u00a0"), "whitespace"),
    (patient(implicitRules="urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"),
     patient(implicitRules="urn:uuid:0C3151BD-1CBF-4D64-B04D-CD9187A4C6E0"), "UUIDs are lowercase"),
    ({"resourceType": "ValueSet", "id": "v", "text": NARRATIVE, "status": "draft",
      "compose": {"include": [{"system": "http://loinc.org", "version": "2.1"}]}},
     {"resourceType": "ValueSet", "id": "v", "text": NARRATIVE, "status": "draft",
      "compose": {"include": [{"system": "http://loinc.org|2.1"}]}}, "without a |version"),
    ({"resourceType": "ConceptMap", "id": "m", "text": NARRATIVE, "status": "draft", "group": [{
        "source": "http://hl7.org/fhir/administrative-gender", "element": [{"code": "male", "target": [{"equivalence": "unmatched"}]}]}]},
     {"resourceType": "ConceptMap", "id": "m", "text": NARRATIVE, "status": "draft", "group": [{
         "source": "http://hl7.org/fhir/administrative-gender", "element": [{"code": "man", "target": [{"equivalence": "unmatched"}]}]}]},
     "not in the code system"),
])
def test_rules_the_agreement_corpus_found(validator: Validator, good: dict[str, Any], bad: dict[str, Any],
                                          fragment: str) -> None:
    assert errors(validator, good) == []
    assert any(fragment in f.message for f in errors(validator, bad)), errors(validator, bad)


def test_dicom_extensions_are_accepted_as_the_hl7_validator_does(validator: Validator) -> None:
    assert errors(validator, patient(extension=[{"url": "http://nema.org/fhir/extensions#0010:1010",
                                                  "valueString": "x"}])) == []


def test_a_versioned_canonical_names_that_version_only() -> None:
    defs = load()
    assert defs.resolve("http://hl7.org/fhir/StructureDefinition/SimpleQuantity|4.0.1") is not None
    assert defs.resolve("http://hl7.org/fhir/StructureDefinition/SimpleQuantity|5.0.0") is None
