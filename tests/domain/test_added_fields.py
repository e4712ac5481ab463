"""The optional fields added after v1.0 (DOMAIN.md): accepted when well formed, refused by name when not."""
from __future__ import annotations

from typing import Any

import pytest
from factories import FACTORIES, administration, assessment, esketamine_session, treatment_plan

from service.domain import rules
from service.domain.kinds import KINDS

OVERRIDE = {"by": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9990000017"},
                   "name": "Dr. Aya Prescriber"},
            "reason": "Aneurysm repaired 2019; vascular surgeon cleared treatment", "at": "2026-02-27T15:00:00-05:00"}


def load(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    return KINDS[kind].schema().load(record)  # type: ignore[no-any-return]


def errors(kind: str, record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i.field, i.rule or "") for i in rules.check(kind, load(kind, record)) if i.severity == "error"]


def schema_errors(kind: str, record: dict[str, Any]) -> set[str]:
    from marshmallow import ValidationError

    from service.domain.schemas import flatten_errors
    with pytest.raises(ValidationError) as info:
        load(kind, record)
    return {path for path, _ in flatten_errors(info.value.messages)}


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_records_without_the_new_fields_still_load(kind: str) -> None:
    assert "external_id" in load(kind, FACTORIES[kind]())


def test_contraindication_override_documents_who_why_when() -> None:
    screening = {"contraindications": [{"code": "aneurysmal-vascular-disease", "present": True, "override": OVERRIDE}]}
    loaded = load("treatment-plan", treatment_plan(screening=screening))
    override = loaded["screening"]["contraindications"][0]["override"]
    assert override["by"]["name"] == "Dr. Aya Prescriber" and override["reason"].startswith("Aneurysm")
    assert override["at"].utcoffset() is not None


@pytest.mark.parametrize("missing", ["by", "reason", "at"])
def test_an_override_without_who_why_or_when_is_refused(missing: str) -> None:
    override = {k: v for k, v in OVERRIDE.items() if k != missing}
    screening = {"contraindications": [{"code": "aneurysmal-vascular-disease", "present": True, "override": override}]}
    assert schema_errors("treatment-plan", treatment_plan(screening=screening)) == {
        f"screening.contraindications[0].override.{missing}"}


@pytest.mark.parametrize("value", [True, False, None])
def test_breastfeeding_is_true_false_or_unknown(value: bool | None) -> None:
    assert load("treatment-plan", treatment_plan(screening={"breastfeeding": value}))["screening"]["breastfeeding"] \
        is value


def test_breastfeeding_must_be_a_boolean() -> None:
    assert schema_errors("treatment-plan", treatment_plan(screening={"breastfeeding": "no"})) == {
        "screening.breastfeeding"}


def _bprs(value: int, anchoring: str | None = None) -> dict[str, Any]:
    score: dict[str, Any] = {"instrument": "bprs-positive", "value": value, "at": "2026-03-02T09:30:00-05:00"}
    if anchoring:
        score["anchoring"] = anchoring
    return administration(scores=[score])


def test_bprs_anchored_1_to_7_runs_from_4_to_28() -> None:  # clinical.md §3, BPRS+
    assert errors("administration", _bprs(28, "1-7")) == []
    assert errors("administration", _bprs(4, "1-7")) == []
    assert errors("administration", _bprs(3, "1-7")) == [("scores[0].value", "score-range")]
    assert errors("administration", _bprs(29, "1-7")) == [("scores[0].value", "score-range")]


def test_bprs_anchored_0_to_6_runs_from_0_to_24_and_is_the_default() -> None:
    assert errors("administration", _bprs(0, "0-6")) == []
    assert errors("administration", _bprs(25, "0-6")) == [("scores[0].value", "score-range")]
    assert errors("administration", _bprs(25)) == [("scores[0].value", "score-range")]


def test_unknown_anchoring_is_refused_by_name() -> None:
    assert schema_errors("administration", _bprs(10, "0-7")) == {"scores[0].anchoring"}


def test_anchoring_belongs_to_bprs_only() -> None:
    record = administration(scores=[{"instrument": "cadss", "value": 10, "anchoring": "1-7",
                                     "at": "2026-03-02T09:30:00-05:00"}])
    assert errors("administration", record) == [("scores[0].anchoring", "score-anchoring")]


def test_concomitant_medications_and_ready_to_leave_are_accepted() -> None:
    session = esketamine_session(concomitant_medications=[
        {"name": "lorazepam", "class": "benzodiazepine", "rxnorm": "6470"},
        {"name": "methylphenidate", "class": "psychostimulant"}],
        ready_to_leave_at="2026-03-02T10:30:00-05:00")
    loaded = load("administration", session)
    assert [m["class_"] for m in loaded["concomitant_medications"]] == ["benzodiazepine", "psychostimulant"]
    assert loaded["ready_to_leave_at"].utcoffset() is not None


@pytest.mark.parametrize("med, field", [
    ({"name": "x", "class": "sleeping-pill"}, "concomitant_medications[0].class"),
    ({"class": "opioid"}, "concomitant_medications[0].name"),
    ({"name": "x", "class": "opioid", "rxnorm": "abc"}, "concomitant_medications[0].rxnorm"),
])
def test_malformed_concomitant_medication_is_named(med: dict[str, Any], field: str) -> None:
    assert schema_errors("administration", administration(concomitant_medications=[med])) == {field}


def test_ready_to_leave_needs_an_offset() -> None:
    assert schema_errors("administration", administration(ready_to_leave_at="2026-03-02T10:30:00")) == {
        "ready_to_leave_at"}


@pytest.mark.parametrize("item9", [0, 1, 2, 3])
def test_phq9_item9_answers_0_to_3(item9: int) -> None:
    assert errors("assessment", assessment(phq9_item9=item9)) == []


@pytest.mark.parametrize("item9", [-1, 4, "2", 1.5])
def test_phq9_item9_outside_its_answer_list_is_refused(item9: Any) -> None:
    assert schema_errors("assessment", assessment(phq9_item9=item9)) == {"phq9_item9"}


def test_phq9_item9_belongs_to_a_phq9() -> None:
    assert errors("assessment", assessment(instrument="madrs", score=30, phq9_item9=1)) == [
        ("phq9_item9", "phq9-item9")]


def test_phq9_item9_cannot_exceed_the_total_it_is_part_of() -> None:
    assert errors("assessment", assessment(score=2, phq9_item9=3)) == [("phq9_item9", "phq9-item9")]
