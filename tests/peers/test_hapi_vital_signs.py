"""R4's vital-signs profiles (vitalsigns, bp, heartrate, bodyweight, oxygensat, ...) on the official R4 examples that
claim them, on those examples re-claimed by their specific profile, on our examples, and on mutations that break a
profile's codes, category or units: we find errors exactly where the HL7 validator (HAPI's, at its defaults) does,
and as many."""
from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from validation.corpus import official_all
from validation.test_hapi_agreement import OFFICIAL, _errors, _need
from validation.verdicts import hapi_issues

from service.conformance.definitions import CORE_SD, load
from service.resources import profiles_dir
from service.validation.engine import Validator

#: official example stem prefix → the specific R4 profile it fits
SPECIFIC = {"blood-pressure": "bp", "bmi": "bmi", "body-height": "bodyheight", "body-length": "bodyheight",
            "body-temperature": "bodytemp", "head-circumference": "headcircum", "heart-rate": "heartrate",
            "respiratory-rate": "resprate", "satO2": "oxygensat", "vitals-panel": "vitalspanel"}
OURS = {"bp-esketamine-session-1-pre": "bp", "bp-esketamine-session-1-post40": "bp", "bp-iv-session-3-intra": "bp",
        "heart-rate-iv-session-1-intra": "heartrate", "spo2-esketamine-session-1-post": "oxygensat"}
Doc = dict[str, Any]


def _code(code: str) -> Callable[[Doc], None]:
    return lambda d: d["code"].__setitem__("coding", [{"system": "http://loinc.org", "code": code}])


#: name → (source, profile claimed, change); codes from terminology.md (R4 vital-signs value set)
MUTATIONS: dict[str, tuple[str, str, Callable[[Doc], None]]] = {
    "hr-wrong-code": ("heart-rate", "heartrate", _code("8310-5")),
    "hr-as-bodyweight": ("heart-rate", "bodyweight", lambda d: None),
    "hr-wrong-unit": ("heart-rate", "heartrate", lambda d: d["valueQuantity"].update(code="mm[Hg]", unit="mmHg")),
    "spo2-only-59408-5": ("satO2", "oxygensat", _code("59408-5")),
    "spo2-extra-59408-5": ("satO2", "oxygensat",
                           lambda d: d["code"]["coding"].append({"system": "http://loinc.org", "code": "59408-5"})),
    "bp-no-diastolic": ("blood-pressure", "bp", lambda d: d.__setitem__("component", d["component"][:1])),
    "bp-panel-code": ("blood-pressure", "bp", _code("85353-1")),
    "bp-component-unit": ("blood-pressure", "bp",
                          lambda d: d["component"][0]["valueQuantity"].update(code="kg", unit="kg")),
    "vs-no-category": ("heart-rate", "vitalsigns", lambda d: d.pop("category")),
    "vs-lab-category": ("heart-rate", "vitalsigns", lambda d: d.__setitem__("category", [{"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}])),
}


def _claiming(doc: Doc, profile: str, change: Callable[[Doc], None] = lambda d: None) -> Doc:
    doc = copy.deepcopy(doc)
    doc.setdefault("meta", {})["profile"] = [CORE_SD + profile]
    change(doc)
    return doc


def corpus() -> dict[str, Doc]:
    official = {name.removeprefix("Observation-"): doc for name, doc in official_all(_need(OFFICIAL))
                if CORE_SD + "vitalsigns" in doc.get("meta", {}).get("profile", [])}
    docs = {f"official/{n}": d for n, d in official.items()}
    docs |= {f"official/{n}-as-{p}": _claiming(d, p) for n, d in official.items()
             for prefix, p in SPECIFIC.items() if n.startswith(prefix)}
    docs |= {f"mutated/{n}": _claiming(official[src], p, change) for n, (src, p, change) in MUTATIONS.items()}
    for stem, p in OURS.items():
        ours = json.loads((profiles_dir() / "examples" / f"Observation-{stem}.json").read_text(encoding="utf-8"))
        docs |= {f"ours/{stem}-as-{q}": _claiming(ours, q) for q in (p, "vitalsigns")}
    return docs


def test_vital_signs_verdicts_are_the_hl7_validators() -> None:
    docs = corpus()
    assert len([n for n in docs if n.startswith("official/") and "-as-" not in n]) == 12
    theirs = hapi_issues(docs, ig_dir=profiles_dir())
    ours = Validator(load())
    counts = {name: (len(_errors(ours.validate(doc))),
                     len([i for i in theirs[name] if i["severity"] in ("error", "fatal")])) for name, doc in docs.items()}
    assert {n: c for n, c in counts.items() if c[0] != c[1]} == {}
    assert all(c[1] > 0 for n, c in counts.items() if n.startswith("mutated/") and "extra" not in n)


@pytest.mark.parametrize("name", ["mutated/spo2-extra-59408-5"])
def test_an_additional_code_beside_the_profiles_code_is_allowed(name: str) -> None:
    assert _errors(Validator(load()).validate(corpus()[name])) == []
