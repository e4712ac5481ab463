"""The FHIR JSON toolkit: reference walking and rewriting, ETags, OperationOutcomes, findings that refuse."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from service.errors import Issue, Unprocessable
from service.fhirjson import (
    ISSUE_COL,
    Finding,
    dumps,
    error_outcome,
    etag,
    etag_tag,
    etag_version,
    findings_of,
    has_errors,
    if_match_version,
    matches_pattern,
    operation_outcome,
    outcome,
    reference_key,
    references,
    refuse_errors,
    renamed,
    renaming,
    rewrite_references,
    rewritten,
    version_id,
)

SESSION: dict[str, Any] = {
    "resourceType": "MedicationAdministration",
    "subject": {"reference": "Patient/p1", "display": "Ann"},
    "context": {"reference": "urn:uuid:enc"},
    "contained": [{"resourceType": "Medication", "id": "m", "manufacturer": {"reference": "Organization/o"}}],
    "supportingInformation": [{"reference": "Observation/a"}, {"identifier": {"value": "x"}},
                              {"reference": "Observation/b", "type": "Observation"}],
    "note": [{"text": "reference"}],
    "reasonReference": [{"reference": 7}],  # not a string: not a literal reference
}


# --- references --------------------------------------------------------------------------------

def test_references_are_walked_in_document_order_with_their_fhirpath() -> None:
    assert list(references(SESSION, "MedicationAdministration")) == [
        ("MedicationAdministration.subject.reference", "Patient/p1"),
        ("MedicationAdministration.context.reference", "urn:uuid:enc"),
        ("MedicationAdministration.contained[0].manufacturer.reference", "Organization/o"),
        ("MedicationAdministration.supportingInformation[0].reference", "Observation/a"),
        ("MedicationAdministration.supportingInformation[2].reference", "Observation/b"),
    ]


def test_contained_resources_can_be_left_out() -> None:
    found = [ref for _, ref in references(SESSION, contained=False)]
    assert found == ["Patient/p1", "urn:uuid:enc", "Observation/a", "Observation/b"]


def test_a_reference_nested_in_a_reference_is_found_after_its_parent() -> None:
    node = [{"reference": "A/1", "extension": [{"valueReference": {"reference": "B/2"}}]}]
    assert list(references(node)) == [("$[0].reference", "A/1"),
                                      ("$[0].extension[0].valueReference.reference", "B/2")]


def test_scalars_and_empty_containers_hold_no_references() -> None:
    for node in (None, "Patient/1", 3, {}, [], {"reference": None}):
        assert list(references(node)) == []


def test_very_deep_json_is_walked_without_recursion() -> None:
    node: Any = {"reference": "Patient/deep"}
    for _ in range(5000):
        node = {"item": [node]}
    assert [ref for _, ref in references(node)] == ["Patient/deep"]


def test_rewrite_replaces_only_the_named_references_and_leaves_the_input_alone() -> None:
    before = copy.deepcopy(SESSION)
    out = rewrite_references(SESSION, {"urn:uuid:enc": "Encounter/e9", "Organization/o": "Organization/ours"})
    assert before == SESSION
    assert out["context"] == {"reference": "Encounter/e9"}
    assert out["contained"][0]["manufacturer"]["reference"] == "Organization/ours"
    assert out["subject"] == {"reference": "Patient/p1", "display": "Ann"}
    assert out["note"] == [{"text": "reference"}] and out["reasonReference"] == [{"reference": 7}]
    assert out["contained"] is not SESSION["contained"]


def test_rewritten_is_the_rewrite_then_the_walk_of_its_copy_outside_contained_resources() -> None:
    names = {"urn:uuid:enc": "Encounter/e9", "Organization/o": "Organization/ours", "Observation/b": "Observation/c"}
    out, found = rewritten(SESSION, names)
    assert out == rewrite_references(SESSION, names) and list(out) == list(SESSION)
    assert found == list(references(out, "MedicationAdministration", contained=False)) == [
        ("MedicationAdministration.subject.reference", "Patient/p1"),
        ("MedicationAdministration.context.reference", "Encounter/e9"),
        ("MedicationAdministration.supportingInformation[0].reference", "Observation/a"),
        ("MedicationAdministration.supportingInformation[2].reference", "Observation/c")]
    assert out["contained"] is not SESSION["contained"] and out["note"] is not SESSION["note"]


def test_rewritten_copies_every_list_and_reports_the_references_in_lists_of_lists() -> None:
    """A list is copied with its scalars as they are and its objects and lists rewritten in their places."""
    resource = {"resourceType": "Basic", "extension": [[{"reference": "urn:a"}, "s", 1, None], [], "t"],
                "identifier": ["x", {"reference": "urn:b"}]}
    out, found = rewritten(resource, {"urn:a": "Patient/1"})
    assert out == {"resourceType": "Basic", "extension": [[{"reference": "Patient/1"}, "s", 1, None], [], "t"],
                   "identifier": ["x", {"reference": "urn:b"}]}
    assert found == [("Basic.extension[0][0].reference", "Patient/1"), ("Basic.identifier[1].reference", "urn:b")]
    assert out["extension"] is not resource["extension"] and out["extension"][0] is not resource["extension"][0]
    assert out["extension"][1] is not resource["extension"][1] and out["identifier"] is not resource["identifier"]
    assert resource["extension"][0][0] == {"reference": "urn:a"}


def _project_json() -> list[tuple[Path, Any]]:
    """Every JSON document of the project's tests and profiles, with its path."""
    root, found = Path(__file__).resolve().parents[1], []
    for path in sorted([*root.glob("tests/**/*.json"), *root.glob("profiles/**/*.json")]):
        try:
            found.append((path, json.loads(path.read_text(encoding="utf-8"))))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
    return found


def _project_resources() -> list[tuple[Path, dict[str, Any]]]:
    """Every resource of _project_json's documents (and their Bundles' entries), with its path."""
    found = []
    for path, doc in _project_json():
        resources = [doc] + [e.get("resource") for e in doc.get("entry") or [] if isinstance(e, dict)] \
            if isinstance(doc, dict) else []
        found += [(path, r) for r in resources if isinstance(r, dict) and "resourceType" in r]
    return found


def test_rewritten_agrees_with_rewrite_and_references_on_every_json_resource_of_the_project() -> None:
    resources = _project_resources()
    for path, resource in resources:
        # every reference renamed, so the walk must report each as rewritten
        names = {ref: f"Renamed/{i}" for i, (_, ref) in enumerate(references(resource))}
        out, found = rewritten(resource, names)
        expected = rewrite_references(resource, names)
        assert json.dumps(out) == json.dumps(expected), path
        assert found == list(references(expected, resource["resourceType"], contained=False)), path
    assert len(resources) > 200


def test_renamed_text_is_the_text_of_the_rewritten_copy_on_every_json_resource_of_the_project() -> None:
    """What a record's export writes from the text it already has: dumps(rewritten(r, names)[0]) from dumps(r)."""
    resources = _project_resources()
    for path, resource in resources:
        names = {ref: f"Renamed/ü\"{i}" for i, (_, ref) in enumerate(references(resource)) if i % 2 == 0}
        renames = renaming(names)
        assert renames is not None
        assert renamed(dumps(resource), renames) == dumps(rewritten(resource, names)[0]), path
    assert len(resources) > 200


def test_renamed_gives_up_where_the_text_cannot_tell() -> None:
    names = {"urn:uuid:enc": "Encounter/e9"}
    renames = renaming(names)
    assert renames is not None and renamed(dumps(SESSION), renames) == dumps(rewritten(SESSION, names)[0])
    odd = {"resourceType": "Basic", 'x"reference': "urn:uuid:enc", "note": [{"text": '"reference": "urn:uuid:enc"'}]}
    assert renamed(dumps(odd), renames) is None  # a member name holding a quote: not a reference member
    assert dumps(rewritten(odd, names)[0]) == dumps(odd)  # nothing rewritten, as a text replacement would have
    assert renaming({"urn:uuid:a": "urn:uuid:b", "urn:uuid:b": "Patient/1"}) is None  # renamed once, not twice


def test_renamed_reads_a_reference_holding_escapes_as_rewritten_does() -> None:
    """A reference whose text holds an escape (a quote or a backslash in it): the quote found first may be an
    escaped one, so its members are replaced name by name; the others beside it as usual."""
    odd = ['urn:a"b', "urn:a", 'urn:c\\', "urn:c", 'urn:"', "urn:uuid:enc", "\\", '"']
    resource = {"resourceType": "Basic", "extension": [{"valueReference": {"reference": ref}} for ref in odd],
                "note": [{"text": '"reference": "urn:a"'}]}
    for names in ({ref: f"Basic/{i}" for i, ref in enumerate(odd)}, {"urn:a": 'Basic/"q'}, {'urn:a"b': "Basic/1"},
                  {"urn:uuid:enc": "Encounter/e9"}, {}):
        renames = renaming(names)
        assert renames is not None
        assert renamed(dumps(resource), renames) == dumps(rewritten(resource, names)[0]), names
    plain = {"resourceType": "Basic", "subject": {"reference": "urn:a"}, "focus": {"reference": "urn:b"}}
    assert renamed(dumps(plain), renaming({"urn:x": "Basic/x"}) or {}) == dumps(plain)


def test_dumps_writes_the_text_json_dumps_writes() -> None:
    odd: list[Any] = [None, True, False, 0, -7, 2**70, 1.0, 70.0, 1e16, 1.5e-7, -0.0, float("nan"), float("inf"),
                      float("-inf"), "", "é ü 中 \U0001f600", "\x00\x1f\x7f \" \\ / \n\t\r\b\f", [], {}, [[]], [{}],
                      {3: "int key", 2.5: "float key", False: "bool", None: "none"}, {"a": [1, {"b": [None, "x"]}]}]
    for value in [*odd, odd, {"all": odd}]:
        assert dumps(value) == json.dumps(value), value
    documents = _project_json()
    for path, doc in documents:
        assert dumps(doc) == json.dumps(doc), path
    assert len(documents) > 200
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        dumps({"a": {1}})


# --- ETags ---------------------------------------------------------------------------------------

def test_an_etag_is_weak_and_quoted() -> None:
    assert etag(3) == 'W/"3"' and etag("x1") == 'W/"x1"'


@pytest.mark.parametrize("text, tag, version", [
    ('W/"3"', "3", 3), ('"3"', "3", 3), (' W/"12" ', "12", 12), ('W/"abc"', "abc", None), ('W/""', "", None),
    ("3", None, None), ("W/3", None, None), ('W/"3', None, None), ("*", None, None), ('w/"3"', None, None),
    ('W/"²"', "²", None), ('"3" , "4"', None, None), ('W/"' + "9" * 19 + '"', "9" * 19, None),
    ('W/"' + "9" * 5000 + '"', "9" * 5000, None),
])
def test_etags_are_parsed_as_rfc_9110_entity_tags(text: str, tag: str | None, version: int | None) -> None:
    assert etag_tag(text) == tag
    assert etag_version(text) == version


@pytest.mark.parametrize(("text", "version"), [
    ('W/"3"', 3), ('"3"', 3), ("3", 3), ("W/3", 3), (' W/"12" ', 12), ("*", None), ('W/"x"', None), ("", None),
    ('W/"0"', 0), ("²", None)])
def test_a_fhir_if_match_is_read_as_hapi_reads_it(text: str, version: int | None) -> None:
    assert if_match_version(text) == version


def test_the_largest_version_of_ours_still_parses() -> None:
    assert etag_version(etag(2**31 - 1)) == 2**31 - 1


# --- OperationOutcome ----------------------------------------------------------------------------

def test_an_empty_outcome_says_there_are_no_issues() -> None:
    assert outcome([]) == {"resourceType": "OperationOutcome", "issue": [
        {"severity": "information", "code": "informational", "details": {"text": "No issues found."}}]}
    assert operation_outcome([]) == outcome([])


def test_findings_become_issues_with_their_path_and_position() -> None:
    found = [Finding("error", "structure", "Patient.gender", "bad code", line=4, column=13),
             Finding("warning", "invalid", "Patient.name[0]", "odd")]
    issues = operation_outcome(found)["issue"]
    assert issues[0]["expression"] == ["Patient.gender"] and issues[0]["details"] == {"text": "bad code"}
    assert issues[0]["location"] == ["Patient.gender", "Line[4] Col[13]"]
    assert {"url": ISSUE_COL, "valueInteger": 13} in issues[0]["extension"]
    assert issues[1] == {"severity": "warning", "code": "invalid", "details": {"text": "odd"},
                         "expression": ["Patient.name[0]"]}
    assert findings_of(operation_outcome(found)) == [Finding(f.severity, f.code, f.expression, f.message)
                                                     for f in found]
    assert findings_of(outcome([])) == []


def test_errors_are_error_and_fatal_findings() -> None:
    assert not has_errors([Finding("warning", "x", "$", "w"), Finding("information", "x", "$", "i")])
    assert has_errors([Finding("fatal", "x", "$", "f")]) and has_errors([Finding("error", "x", "$", "e")])


def test_an_error_outcome_leads_with_the_detail_then_each_field() -> None:
    body = error_outcome(404, "Patient/x is not known.", [Issue("Patient.id", "no such id")])
    assert body["issue"] == [
        {"severity": "error", "code": "not-found", "details": {"text": "Patient/x is not known."}},
        {"severity": "error", "code": "not-found", "details": {"text": "no such id"}, "expression": ["Patient.id"]}]
    assert error_outcome(599, "odd")["issue"][0]["code"] == "exception"


def test_an_error_outcome_keeps_the_validators_own_issues() -> None:
    full = operation_outcome([Finding("warning", "invalid", "Patient.name", "odd")])
    body = error_outcome(422, "Does not conform.", [Issue("ignored", "when the full outcome is given")], full)
    assert [i["severity"] for i in body["issue"]] == ["error", "warning"]
    assert body["issue"][0] == {"severity": "error", "code": "processing", "details": {"text": "Does not conform."}}


def test_findings_with_an_error_refuse_with_422_carrying_all_of_them() -> None:
    found = [Finding("warning", "invalid", "Observation.note", "odd"),
             Finding("error", "required", "Observation.status", "missing"),
             Finding("fatal", "structure", "$this", "not JSON")]
    with pytest.raises(Unprocessable) as raised:
        refuse_errors(found, "The Observation does not conform to its profile.")
    assert raised.value.status == 422 and raised.value.detail == "The Observation does not conform to its profile."
    assert raised.value.issues == [Issue("Observation.status", "missing"), Issue("$this", "not JSON")]
    assert raised.value.extra["operation_outcome"] == operation_outcome(found)


def test_findings_without_errors_pass() -> None:
    refuse_errors([Finding("warning", "invalid", "Observation.note", "odd")], "unused")
    refuse_errors([], "unused")


@pytest.mark.parametrize("ref, key", [
    ("Patient/1", ("Patient", "1")), ("https://ehr.example/fhir/Patient/1/_history/3", ("Patient", "1")),
    ("Observation/a.b-9", ("Observation", "a.b-9")), ("urn:uuid:0b7f6a3e", None), ("#contained", None), ("#", None),
    ("1", None), ("patient/1", None), ("Patient/", None), ("", None),
])
def test_a_reference_key_is_type_and_id_without_the_version(ref: str, key: tuple[str, str] | None) -> None:
    assert reference_key(ref) == key


@pytest.mark.parametrize("text, version", [("1", 1), ("42", 42), ("0", 0), ("9" * 18, int("9" * 18)), ("9" * 19, None),
                                           ("9" * 5000, None), ("", None), ("²", None), ("-1", None), (" 1", None),
                                           ("1a", None)])
def test_a_version_id_is_a_plain_number_of_at_most_18_digits(text: str, version: int | None) -> None:
    assert version_id(text) == version


@pytest.mark.parametrize("value, pattern, expected", [
    ({"coding": [{"system": "s", "code": "c", "display": "d"}, {"code": "x"}]}, {"coding": [{"system": "s", "code": "c"}]},
     True),
    ({"coding": [{"system": "s", "code": "other"}]}, {"coding": [{"system": "s", "code": "c"}]}, False),
    ({"coding": {"system": "s"}}, {"coding": [{"system": "s"}]}, False),
    ("final", "final", True), (1, 1.0, True), ("1", 1, False), ({}, {}, True), ([], [], True),
])
def test_a_pattern_matches_a_value_that_holds_all_of_it(value: object, pattern: object, expected: bool) -> None:
    assert matches_pattern(value, pattern) is expected
