"""Global profiles with a real published guide (tests/validation/global_cases.py: Plan-Net 1.2.0's profiles, the user's
guide declaring them global): our verdicts are the HL7 validator's (HAPI's, at the HL7 CLI's defaults) without and
with the globals. HAPI's FhirInstanceValidator takes no ImplementationGuide, so its side of "with" is what the HL7
InstanceValidator does with a global profile: it validates the resource against that profile as against one it is
asked for (`--profile`, one run per type)."""
from __future__ import annotations

import json
from pathlib import Path

from peers.hapi_validator import errors, validate
from validation import global_cases

from service.conformance.definitions import load
from service.conformance.package import CONFORMANCE_TYPES, Package
from service.validation.engine import Validator
from service.validation.policy import ValidationPolicy


def test_verdicts_with_and_without_global_profiles_are_the_hl7_validators(tmp_path: Path) -> None:
    cases = global_cases.cases()
    files = {}
    for name, (_, doc, _) in cases.items():
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(doc), encoding="utf-8")
    package = global_cases.package()
    held = [r for r in Package.from_tgz(package).resources() if r.get("resourceType") in CONFORMANCE_TYPES
            and r.get("resourceType") != "ImplementationGuide"]
    defs = load()
    without = Validator(defs.with_own([*defs.own.values(), *held]), ValidationPolicy())
    with_globals = Validator(defs.with_own([*defs.own.values(), *held, global_cases.global_guide()]),
                             ValidationPolicy())

    def ours(validator: Validator) -> dict[str, bool]:
        return {name: not any(f.severity in ("error", "fatal") for f in validator.validate(doc))
                for name, (_, doc, _) in cases.items()}

    def theirs(names: list[str], profile: str | None) -> dict[str, bool]:
        report = validate([files[n] for n in names], None, profile, packages=[package])
        return {Path(r["file"]).stem: not errors(r) for r in report["results"]}

    hapi_without = theirs(list(cases), None)
    hapi_with: dict[str, bool] = {}
    for kind, (profile, _, _) in global_cases.TYPES.items():
        hapi_with |= theirs([n for n, (k, _, _) in cases.items() if k == kind], profile)
    assert hapi_without == ours(without) == dict.fromkeys(cases, True)
    assert hapi_with == ours(with_globals) == {name: accepted for name, (_, _, accepted) in cases.items()}
