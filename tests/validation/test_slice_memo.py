"""A Coding or CodeableConcept walked against its slice with nothing found is not walked there again with the same
codes (slicing.Slicing._coded_key): the findings must be those of a validator that remembers nothing, whatever
was validated before and under whichever policy."""
from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

from validation.corpus import mutated

from service.conformance.definitions import CORE_SD, load
from service.resources import profiles_dir
from service.validation.engine import Validator
from service.validation.plan import Constraint
from service.validation.policy import ValidationPolicy
from service.validation.run import Run
from service.validation.slicing import WALKED

POLICIES = [None, ValidationPolicy(), ValidationPolicy(display_issues="ignore"),
            ValidationPolicy(display_issues="error")]


def _docs() -> list[dict[str, Any]]:
    paths = [p for p in sorted(profiles_dir().glob("examples/**/*.json")) if p.name != "manifest.json"]
    docs = [json.loads(p.read_text()) for p in paths] + [doc for _, doc in mutated(paths)]
    # a category with a wrong display, and an unknown code, after the same category seen clean
    vitals = [d for d in docs if any(c.get("code") == "vital-signs" for cat in d.get("category", [])
                                     if isinstance(cat, dict) for c in cat.get("coding", []) if isinstance(c, dict))]
    for doc, change in zip(vitals[:2], ({"display": "Vitals!"}, {"code": "vital-sign"}), strict=False):
        odd = copy.deepcopy(doc)
        odd["category"][0]["coding"][0].update(change)
        docs.append(odd)
    return docs


def _findings(validator: Validator, doc: dict[str, Any], policy: ValidationPolicy | None) -> list[Any]:
    return [(f.severity, f.code, f.expression, f.message) for f in validator.validate(doc, policy=policy)]


def test_findings_do_not_depend_on_what_the_validator_saw_before() -> None:
    docs = _docs()
    runs = [(i, policy) for i in range(len(docs)) for policy in POLICIES]
    forward, backward = Validator(load()), Validator(load())
    seen = {run: _findings(forward, docs[run[0]], run[1]) for run in runs}
    assert forward._coded_clean, "no slice walk was remembered: the memo is not exercised"
    for run in reversed(runs):
        assert _findings(backward, docs[run[0]], run[1]) == seen[run], run
    again = {run: _findings(forward, docs[run[0]], run[1]) for run in runs}  # every memo in place
    assert again == seen


def test_the_memo_key_is_the_codes_and_the_context_and_nothing_else_is_remembered() -> None:
    validator = Validator(load())
    doc = json.loads((profiles_dir() / "examples" / "Observation-phq9-alpha-baseline.json").read_text())
    validator.validate(doc)
    sliced = next(c for c in validator.plan(doc["meta"]["profile"][0]).root.children if c.name == "category")
    survey = sliced.slices[0]
    run = Run(doc, policy=validator.policy)
    run.plans.append(validator.plan(doc["meta"]["profile"][0]))

    def key(value: Any, policy: ValidationPolicy | None = None, must_support: bool = False) -> Any:
        run.policy, run.must_support = policy or validator.policy, must_support
        return validator._coded_key(value, survey, None, run)

    category = copy.deepcopy(doc["category"][0])
    assert key(category) is not None and key(category) == key(copy.deepcopy(category))
    for change in ({"display": "Questionnaire"}, {"system": "http://example.org/cat"}, {"version": "1"},
                   {"userSelected": True}, {"code": "exam"}):
        other = copy.deepcopy(category)
        other["coding"][0].update(change)
        assert key(other) is not None and key(other) != key(category), change
    assert key({**category, "text": "Survey"}) != key(category)
    assert key({**category, "coding": category["coding"] * 2}) != key(category)
    assert key(category, ValidationPolicy(display_issues="ignore")) != key(category)
    for odd in ({**category, "id": "c1"}, {**category, "extension": [{"url": "http://x.org", "valueString": "x"}]},
                {"coding": [{**category["coding"][0], "id": "c"}]}, {"coding": [{**category["coding"][0], "code": 1}]},
                {"coding": "x"}):
        assert key(odd) is None, odd  # an id, an extension or a wrongly typed member: walked every time
    assert key(category, ValidationPolicy(tx_server="http://tx.example.org/fhir")) is None
    assert key(category, must_support=True) is None


def test_codes_under_a_rule_that_reads_the_resource_are_walked_every_time() -> None:
    """A constraint reading %resource (or any environment variable) on the element, a coding member or a slice of
    them: its answer depends on more than the codes, so nothing there is remembered."""
    validator = Validator(load())
    condition = validator.plan(CORE_SD + "Condition").root
    code = next(c for c in condition.children if c.name == "code")
    assert validator._context_free(code, "CodeableConcept")
    reads = Constraint("x-1", "error", "x", "%resource.subject.exists()", None)
    assert not validator._context_free(replace(code, constraints=(*code.constraints, reads)), "CodeableConcept")
    coding = replace(next(c for c in validator.plan(CORE_SD + "CodeableConcept").root.children if c.name == "coding"),
                     constraints=(reads,))
    assert not validator._context_free(replace(code, children=[coding]), "CodeableConcept")


def test_a_policy_given_its_extension_domains_as_a_list_is_a_memo_key_like_any_other() -> None:
    listed = ValidationPolicy(extension_domains=["https://example.org/fhir/"])  # type: ignore[arg-type]
    assert listed == ValidationPolicy(extension_domains=("https://example.org/fhir/",)) and hash(listed)
    doc = json.loads((profiles_dir() / "examples" / "Condition-trd-alpha.json").read_text())
    assert _findings(Validator(load()), doc, listed) == _findings(Validator(load()), doc, listed)


EXAMPLES = profiles_dir() / "examples"
TIMEPOINT = "https://ketamine-fhir.org/fhir/StructureDefinition/session-timepoint"


def _extension_docs() -> list[dict[str, Any]]:
    """Resources whose sliced extensions Slicing._extensions_key remembers once clean, and the same extensions odd: a
    value of another type or class, another url, an id, a holder, a nested extension, one where its context does not
    allow it (the same items on another owner), a quantity changed member by member or reordered."""
    bp = json.loads((EXAMPLES / "Observation-bp-esketamine-session-1-pre.json").read_text())
    ma = json.loads((EXAMPLES / "MedicationAdministration-iv-session-1.json").read_text())
    encounter = json.loads((EXAMPLES / "Encounter-iv-session-1.json").read_text())
    docs = [bp, ma, encounter]
    for odd in ({"url": TIMEPOINT, "valueCode": "later"}, {"url": TIMEPOINT, "valueString": "pre"},
                {"url": TIMEPOINT, "valueCode": 1}, {"url": TIMEPOINT, "valueCode": True},
                {"url": TIMEPOINT + "s", "valueCode": "pre"}, {"url": TIMEPOINT, "valueCode": "pre", "id": "t"},
                {"url": TIMEPOINT, "_valueCode": {"id": "x"}}, {"url": TIMEPOINT, "valueCode": ""},
                {"url": TIMEPOINT, "extension": [{"url": "part", "valueCode": "pre"}]}):
        docs.append({**bp, "extension": [odd]})
    docs.append({**bp, "extension": bp["extension"] * 2})  # the slice allows one
    docs.append({**encounter, "extension": encounter["extension"] + bp["extension"]})  # not an Encounter's
    docs.append({**ma, "extension": ma["extension"] + bp["extension"]})
    dose = ma["dosage"]["extension"][0]
    for change in ({"code": "mg"}, {"value": "0.5"}, {"value": -0.5}, {"comparator": "<"}, {"system": "http://x.org"},
                   {"id": "q"}, {"value": True}):
        odd_dose = {**dose, "valueQuantity": {**dose["valueQuantity"], **change}}
        docs.append({**ma, "dosage": {**ma["dosage"], "extension": [odd_dose]}})
    reordered = {**dose, "valueQuantity": dict(reversed(list(dose["valueQuantity"].items())))}
    docs.append({**ma, "dosage": {**ma["dosage"], "extension": [reordered]}})
    return docs


def test_sliced_extensions_and_codes_remembered_clean_change_no_finding() -> None:
    """Slicing._sliced_key: a slicing of plain codes, or of plain extensions, found clean is not done again with
    the same items in a like run; the findings are those of a validator that remembers nothing."""
    docs = _extension_docs()
    runs = [(i, policy) for i in range(len(docs)) for policy in POLICIES]
    forward, backward = Validator(load()), Validator(load())
    seen = {run: _findings(forward, docs[run[0]], run[1]) for run in runs}
    tokens = {key[0] for key in forward._coded_clean}
    assert any(len(t) == 2 and t[1] == "Extension" for t in tokens), "no sliced extensions were remembered"
    assert any(len(t) == 3 and t[1] == "CodeableConcept" for t in tokens), "no sliced codes were remembered"
    assert sum(1 for run in runs if seen[run]) > len(POLICIES) * 10  # the odd ones have findings
    for run in reversed(runs):
        assert _findings(backward, docs[run[0]], run[1]) == seen[run], run
    assert {run: _findings(forward, docs[run[0]], run[1]) for run in runs} == seen


def test_a_plain_meta_remembered_clean_changes_no_finding() -> None:
    """coded.frozen_meta: a resource's meta walked clean is not walked again with the same profiles, tags and
    security labels in a like run; odd metas (an example or relative profile, a tag of a wrong type, an id, an
    extension, a versionId) are walked, and the findings are those of a validator that remembers nothing."""
    bp = json.loads((EXAMPLES / "Observation-bp-esketamine-session-1-pre.json").read_text())
    tag = {"system": "https://ketamine-fhir.org/fhir/mapping", "code": "administration/1", "display": "Mapped"}
    metas = [{"tag": [tag]}, {**bp["meta"], "tag": [tag]}, {**bp["meta"], "source": "urn:uuid:x"},
             {**bp["meta"], "source": 1}, {**bp["meta"], "profile": ["http://example.org/StructureDefinition/x"]},
             {**bp["meta"], "profile": ["x"]}, {**bp["meta"], "tag": [{"code": 2}]}, {**bp["meta"], "tag": tag},
             {**bp["meta"], "security": [{**tag, "userSelected": "yes"}]}, {**bp["meta"], "id": "m"},
             {**bp["meta"], "extension": [{"url": "http://example.org/x", "valueString": "x"}]},
             {**bp["meta"], "versionId": "1"}, {**bp["meta"], "versionId": 1}, {**bp["meta"], "lastUpdated": "x"},
             {**bp["meta"], "tag": [tag, {**tag, "display": None}]}, {}]
    docs = [{**bp, "meta": meta} for meta in metas] + [{**bp, "meta": meta, "id": "other"} for meta in metas]
    policies = [*POLICIES, ValidationPolicy(allow_example_urls=True), ValidationPolicy.store()]
    runs = [(i, policy) for i in range(len(docs)) for policy in policies]
    forward, backward = Validator(load()), Validator(load())
    seen = {run: _findings(forward, docs[run[0]], run[1]) for run in runs}
    assert any(key[0][1] == "Meta" for key in forward._coded_clean), "no meta was remembered"
    assert len({json.dumps(found) for found in seen.values()}) > 8  # the odd metas say different things
    for run in reversed(runs):
        assert _findings(backward, docs[run[0]], run[1]) == seen[run], run
    assert {run: _findings(forward, docs[run[0]], run[1]) for run in runs} == seen


def test_a_member_holding_null_is_never_remembered_as_a_member_absent() -> None:
    """FHIR JSON refuses null: a coding, a concept or a meta holding one is walked (and refused) though the same
    without that member was remembered clean; a validator that remembers nothing says the same (review 4: a
    `"version": null` or `"source": null` was stored once the same codes or meta had been seen clean)."""
    condition = json.loads((EXAMPLES / "Condition-trd-alpha.json").read_text())
    code, coding = condition["code"], condition["code"]["coding"][0]
    odd = [{**condition, "code": {**code, "coding": [{**coding, name: None}]}}
           for name in ("version", "display", "userSelected")]
    odd += [{**condition, "code": {**code, "text": None}}, {**condition, "meta": {**condition["meta"], "source": None}},
            {**condition, "meta": {**condition["meta"], "tag": [{**coding, "version": None}]}}]
    warm = Validator(load())
    for policy in POLICIES:
        assert not [f for f in _findings(warm, condition, policy) if f[0] == "error"]
        warm.validate({**condition, "meta": {**condition["meta"], "tag": [coding]}}, policy=policy)
    assert any(key[0][1] == "Meta" for key in warm._coded_clean), "no meta was remembered"
    for doc in odd:
        for policy in POLICIES:
            found = _findings(warm, doc, policy)
            assert [f for f in found if f[0] == "error"], (doc, policy)
            assert found == _findings(Validator(load()), doc, policy)


def test_a_sliced_element_of_plain_codes_walked_and_sliced_clean_is_passed_over_whole() -> None:
    """Slicing._sliced_element: a category walked against its element and sliced with nothing found is passed over
    whole the next time the same codes come under the same profile and policy; the same codes under another
    profile (R4's bodyweight, none), or changed (a wrong display, another code, an id, a null, a second category),
    say what a validator that remembers nothing says."""
    bp = json.loads((EXAMPLES / "Observation-bp-esketamine-session-1-pre.json").read_text())
    category = bp["category"][0]
    coding = category["coding"][0]
    docs = [bp, {**bp, "meta": {"profile": [CORE_SD + "bodyweight"]}}, {**bp, "meta": {}},
            {**bp, "meta": {"profile": [CORE_SD + "vitalsigns"]}}]
    for odd in ([{"coding": [{**coding, "display": "Vitals!"}]}], [{"coding": [{**coding, "code": "exam"}]}],
                [{**category, "id": "c"}], [{"coding": [{**coding, "version": None}]}], [category, category],
                [category, {"coding": [{**coding, "code": "exam"}]}], [{"coding": [coding, coding]}]):
        docs += [{**doc, "category": odd} for doc in docs[:4]]
    policies = [*POLICIES, ValidationPolicy.store(), ValidationPolicy(our_profiles=True)]
    runs = [(i, policy) for i in range(len(docs)) for policy in policies]
    forward, backward = Validator(load()), Validator(load())
    seen = {run: _findings(forward, docs[run[0]], run[1]) for run in runs}
    assert any(key[-1] == WALKED for key in forward._coded_clean), "no sliced element was passed over whole"
    assert len({json.dumps(found) for found in seen.values()}) > 8  # the odd categories say different things
    for run in reversed(runs):
        assert _findings(backward, docs[run[0]], run[1]) == seen[run], run
    assert {run: _findings(forward, docs[run[0]], run[1]) for run in runs} == seen
    assert [_findings(forward, doc, None) for doc in docs] == [_findings(Validator(load()), doc, None) for doc in docs]


def test_a_sliced_element_with_no_item_finds_what_slicing_nothing_finds() -> None:
    """Slicing._sliced_element passes an element with no item straight to the slices' counts: for every sliced
    element of R4's vital signs profiles and ours, the findings are _slice_items' on no item (a slice's minimum)."""
    validator = Validator(load())
    urls = [CORE_SD + name for name in ("bp", "bodyweight", "vitalsigns", "heartrate", "oxygensat")] + [
        "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-session-monitoring",
        "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-outcome-score"]
    todo = [validator.plan(url).root for url in urls]
    sliced, said = 0, set()
    while todo:
        element = todo.pop()
        todo += element.children + element.slices
        if not element.slices:
            continue
        fast, slow = Run({}), Run({})
        validator._sliced_element(element, [], "Observation.x", fast)
        validator._slice_items(element, [], "Observation.x", slow)
        assert fast.findings == slow.findings, element.id
        sliced += 1
        said |= {f.message for f in fast.findings}
    assert sliced > 10 and any("requires at least 1, found 0" in m for m in said)


def test_sliced_extensions_of_codes_walked_and_sliced_clean_are_passed_over_whole() -> None:
    """Slicing._recurs: the slices' extensions holding a code or a boolean (a session's timepoint), walked against
    their element and sliced with nothing found, are passed over whole the next time; a number or a quantity (a
    session's number, a dose per kg) is walked every time; odd ones (another code, type, url, owner) say what a
    validator that remembers nothing says."""
    docs = _extension_docs()
    forward = Validator(load())
    store = ValidationPolicy.store()
    seen = [_findings(forward, doc, store) for doc in docs]
    whole = [key for key in forward._coded_clean if key[-1] == WALKED and key[0][1] == "Extension"]
    assert {name for key in whole for _, name, _, _ in key[-2]} == {"valueCode"}  # the timepoint
    walked: list[str] = []
    value = forward._value

    def counted(item: Any, plan: Any, kind: Any, expr: str, run: Run) -> None:
        walked.append(plan.path)
        value(item, plan, kind, expr, run)
    forward._value = counted  # type: ignore[method-assign]
    assert [_findings(forward, doc, store) for doc in docs] == seen
    assert "Observation.extension" in walked  # the odd ones
    walked.clear()
    for doc in docs[:3]:
        forward.validate(doc, policy=store)
    assert "Observation.extension" not in walked
    assert "MedicationAdministration.extension" in walked and "MedicationAdministration.dosage.extension" in walked
    assert seen == [_findings(Validator(load()), doc, store) for doc in docs]
