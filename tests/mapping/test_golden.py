"""Golden tests: clinical scenarios (tests/mapping/golden/*.record.json) and the Bundle each must
become, written by hand from the profiles and terminology.md (*.bundle.json), ids shown as labels."""
from __future__ import annotations

import hashlib
import html
import json
import re
import uuid

import pytest
from mapping.support import golden_bundle, golden_record, labelled

from service.mapping import Mapper, map_record
from service.mapping.identity import RECORD_SYSTEM, RecordKey, RecordKeys, stable_id
from service.mapping.narrative import narrative
from service.mapping.spec import Narrative

KINDS = ["treatment-plan", "administration", "adverse-event", "assessment"]


@pytest.mark.parametrize("kind", KINDS)
def test_record_becomes_the_expected_bundle(mapper: Mapper, kind: str) -> None:
    produced = labelled(mapper.to_bundle(kind, golden_record(kind)))
    expected = golden_bundle(kind)
    assert [e["fullUrl"] for e in produced["entry"]] == [e["fullUrl"] for e in expected["entry"]]
    for got, want in zip(produced["entry"], expected["entry"], strict=True):
        assert got == want, f"{want['fullUrl']}:\n{json.dumps(got, indent=1)}"


@pytest.mark.parametrize("kind", KINDS)
def test_golden_bundle_conforms_to_the_profiles(kind: str) -> None:
    mapped = map_record(kind, golden_record(kind))
    assert not [i for i in mapped.outcome["issue"] if i["severity"] in ("error", "fatal")]


def test_ids_are_uuid5_of_the_business_identifier(mapper: Mapper) -> None:
    bundle = mapper.to_bundle("assessment", golden_record("assessment"))
    observation = bundle["entry"][0]
    key = RecordKey("assessment", "clinic-a", "phq9-2026-03-20")
    assert observation["resource"]["id"] == key.id and uuid.UUID(key.id).version == 5
    assert observation["fullUrl"] == f"urn:uuid:{key.id}"
    assert observation["request"] == {"method": "PUT", "url": f"Observation/{key.id}"}


@pytest.mark.parametrize(("system", "value"), [
    ("https://ketamine-fhir.org/fhir/record/assessment", "clinic-a/phq9-2026-03-20#item/3"),
    ("", ""), ("urn:oid:1.2.3", "ü 中 😀 | / # %"), ("x" * 300, "\x00\n")])
def test_a_stable_id_is_the_uuid5_of_system_bar_value(system: str, value: str) -> None:
    assert stable_id(system, value) == str(uuid.uuid5(uuid.NAMESPACE_URL, f"{system}|{value}"))


def test_a_stable_id_sets_version_and_variant_as_uuid5_for_every_digit_they_replace() -> None:
    """stable_id writes the version digit and the variant's bits into the SHA-1's hex text: the same text as uuid5
    whatever the digits it replaces were (all 16 of each met below)."""
    met = set()
    for i in range(400):
        value = f"clinic-a/session-{i}#vitals/{i % 7}"
        expected = uuid.uuid5(uuid.NAMESPACE_URL, f"{RECORD_SYSTEM}administration|{value}")
        assert stable_id(f"{RECORD_SYSTEM}administration", value) == str(expected)
        met.add(hashlib.sha1(uuid.NAMESPACE_URL.bytes + f"{RECORD_SYSTEM}administration|{value}".encode(),
                             usedforsecurity=False).hexdigest()[16])
    assert len(met) == 16


@pytest.mark.parametrize(("source", "external_id"), [("clinic-a", "s-1"), ("a/b#c", "ü %2F|x"), ("", "")])
@pytest.mark.parametrize(("role", "item"), [(None, None), (None, 3), ("bp", None), ("bp", 0), ("flag-x", 12)])
def test_a_records_keys_are_its_record_keys_identifiers(source: str, external_id: str, role: str | None,
                                                        item: int | None) -> None:
    """RecordKeys (the mapper's, a record's source and external_id encoded once) gives RecordKey's identifiers."""
    expected = RecordKey("administration", source, external_id, role, item).identifier()
    assert RecordKeys("administration", source, external_id).identifier(role, item) == expected


def test_re_export_of_an_unchanged_record_is_byte_identical(mapper: Mapper) -> None:
    for kind in KINDS:
        first = json.dumps(mapper.to_bundle(kind, golden_record(kind)))
        again = json.dumps(mapper.to_bundle(kind, golden_record(kind)))
        assert first == again


def test_an_edited_record_updates_the_same_resources(mapper: Mapper) -> None:
    record = golden_record("administration")
    before = mapper.to_bundle("administration", record)
    record["dose_mg"] = 28.0
    after = mapper.to_bundle("administration", record)
    assert [e["fullUrl"] for e in before["entry"]] == [e["fullUrl"] for e in after["entry"]]
    assert [e["request"] for e in before["entry"]] == [e["request"] for e in after["entry"]]
    assert after["entry"][0]["resource"]["dosage"]["dose"]["value"] == 28.0
    assert before != after


def test_the_same_person_in_two_roles_is_one_entry(mapper: Mapper) -> None:
    record = golden_record("adverse-event")
    bundle = mapper.to_bundle("adverse-event", record)
    assert [e["resource"]["resourceType"] for e in bundle["entry"]].count("Practitioner") == 1


def test_entries_are_ordered_as_fhir_writes_elements(mapper: Mapper) -> None:
    resource = mapper.to_bundle("administration", golden_record("administration"))["entry"][0]["resource"]
    keys = list(resource)
    assert keys[:6] == ["resourceType", "id", "meta", "text", "contained", "extension"]  # the lot's Medication
    assert keys.index("status") < keys.index("medicationReference") < keys.index("subject") < keys.index("dosage")


def test_every_resource_carries_a_narrative_from_its_role(mapper: Mapper) -> None:
    for kind in KINDS:
        for entry in mapper.to_bundle(kind, golden_record(kind))["entry"]:
            text = entry["resource"]["text"]
            assert text["status"] == "generated"
            assert text["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml"><p><b>')


def test_the_session_narrative_says_what_was_given(mapper: Mapper) -> None:
    bundle = mapper.to_bundle("administration", golden_record("administration"))
    assert bundle["entry"][0]["resource"]["text"]["div"] == (
        '<div xmlns="http://www.w3.org/1999/xhtml"><p><b>Ketamine session</b></p><ul>'
        "<li>Session 2</li><li>Status: completed</li><li>ketamine 35.0 mg, intravenous</li>"
        "<li>Body weight: 70.0 kg</li><li>Started: 2026-03-05T09:00:00-05:00</li>"
        "<li>Ended: 2026-03-05T09:40:00-05:00</li></ul></div>")
    systolic_only = next(e["resource"] for e in bundle["entry"] if e["resource"].get("identifier", [{}])[0].get(
        "value", "").endswith("#systolic/1"))
    assert "<li>142 mmHg, intra-dose, at 2026-03-05T09:20:00-05:00</li>" in systolic_only["text"]["div"]


def test_narratives_escape_what_the_clinic_typed(mapper: Mapper) -> None:
    record = golden_record("adverse-event") | {"description": "BP <194/112> & headache"}
    div = mapper.to_bundle("adverse-event", record)["entry"][0]["resource"]["text"]["div"]
    assert "BP &lt;194/112&gt; &amp; headache" in div and "<194" not in div


@pytest.mark.parametrize("typed", ["a & b", "a < b", "a > b", "<&>", "&amp;", "plain", "", "\"quoted\" 'it'"])
def test_a_narrative_escapes_each_of_what_xhtml_text_cannot_hold_alone(typed: str) -> None:
    """narrative() escapes a line or title only when it holds `&`, `<` or `>`: each of them alone is escaped as
    html.escape does (quotes kept), a line without any is as typed."""
    div = narrative(Narrative(f"T {typed}", ("{x}",)), {"x": typed}, {})["div"]
    shown = html.escape(typed, quote=False)
    assert div == f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>T {shown}</b></p><ul><li>{shown}</li></ul></div>'


def test_a_narrative_line_is_its_text_with_each_field_replaced_and_left_out_when_one_is_missing() -> None:
    """narrative() fills a line through a str.format template worked out once: the line's text as written (braces
    that are no field too), each field as often as named, `$.` fields from the whole record, lists joined."""
    lines = ("{a} and {a} {b}", "x {{a}} {not a field} }{ {$.c}", "{missing} gone", "{items}: {$.c.d}", "plain")
    scope, record = {"a": "{b}", "b": 2.5, "items": [1, "two"]}, {"c": {"d": "<&>"}}
    shown = {"a": "{b}", "b": "2.5", "$.c": str(record["c"]), "items": "1, two", "$.c.d": "<&>"}
    kept = [re.sub(r"\{([\w.$]+)\}", lambda m: shown[m.group(1)], line) for line in lines if "missing" not in line]
    expected = "".join(f"<li>{html.escape(line, quote=False)}</li>" for line in kept)
    assert narrative(Narrative("T", lines), scope, record)["div"] == (
        f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>T</b></p><ul>{expected}</ul></div>')
