"""The rule catalogue agrees with the IG: every flag code is in the safety-flag CodeSystem, the hard stops
are its contraindication category, and every rule names its source."""
from __future__ import annotations

import json
from pathlib import Path

from service.domain.findings import CATALOGUE, SEVERITIES
from service.domain.plan_rules import HARD_STOPS, KETAMINE_LABEL, PREGNANCY_CODES

PROFILES = Path(__file__).resolve().parents[2] / "profiles"


def concepts(name: str) -> dict[str, dict[str, object]]:
    doc = json.loads((PROFILES / f"CodeSystem-{name}.json").read_text(encoding="utf-8"))
    return {c["code"]: c for c in doc["concept"]}


def test_every_rule_raises_a_code_of_the_safety_flag_code_system() -> None:
    codes = concepts("ketamine-safety-flag")
    assert {r.code for r in CATALOGUE.values()} <= set(codes)
    assert set(codes) <= {r.code for r in CATALOGUE.values()}  # no code without a rule that raises it


def test_every_rule_has_a_severity_and_a_source_in_clinical_md_or_the_terminology_sheet() -> None:
    for rule in CATALOGUE.values():
        assert rule.severity in SEVERITIES
        assert rule.source.startswith(("clinical.md §", "C-SSRS")), rule.name
        assert rule.summary.endswith("."), rule.name


def test_the_hard_stops_are_the_code_systems_label_contraindications() -> None:
    category = {code: next(p["valueCode"] for p in c["property"] if p["code"] == "category")  # type: ignore[index]
                for code, c in concepts("ketamine-contraindication").items()}
    assert {c for c, kind in category.items() if kind == "contraindication"} == set(HARD_STOPS)
    assert set(PREGNANCY_CODES) | set(KETAMINE_LABEL) <= set(category)
