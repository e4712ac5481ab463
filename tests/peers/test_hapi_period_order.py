"""The HL7 validator (HAPI's, at the HL7 CLI's defaults) gives per-1 the verdicts tests/validation/test_period_order.py
derives from the FHIRPath and R4 text, on the same Encounters: so do we."""
from __future__ import annotations

import json
from pathlib import Path

from peers.hapi_validator import errors, validate
from validation.test_period_order import CASES, encounter

from service.conformance.definitions import load
from service.validation.engine import Validator
from service.validation.policy import ValidationPolicy


def test_per_1_verdicts_are_the_hl7_validators(tmp_path: Path) -> None:
    files = []
    for name in CASES:
        (tmp_path / f"{name}.json").write_text(json.dumps(encounter(name)), encoding="utf-8")
        files.append(tmp_path / f"{name}.json")
    ours = Validator(load(), ValidationPolicy())
    theirs = {Path(r["file"]).stem: any("per-1" in i["message"] for i in errors(r))
              for r in validate(files, None)["results"]}
    mine = {name: any("per-1" in f.message for f in ours.validate(encounter(name)) if f.severity == "error")
            for name in CASES}
    assert theirs == {name: not holds for name, (_, _, holds) in CASES.items()}
    assert mine == theirs
