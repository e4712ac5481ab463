"""The HL7 validator (HAPI's, at the HL7 CLI's defaults) matches blood pressure components to R4's bp slices as
tests/validation/test_vitals_slicing.py says, on the same variants: so do we."""
from __future__ import annotations

import json
from pathlib import Path

from peers.hapi_validator import errors, validate
from validation.test_vitals_slicing import CASES, bp, slice_errors

from service.conformance.definitions import load
from service.validation.engine import Validator


def test_bp_slice_verdicts_are_the_hl7_validators(tmp_path: Path) -> None:
    files = []
    for name in CASES:
        (tmp_path / f"{name}.json").write_text(json.dumps(bp(name)), encoding="utf-8")
        files.append(tmp_path / f"{name}.json")
    theirs = {Path(r["file"]).stem: {s for i in errors(r) for s in ("SystolicBP", "DiastolicBP") if s in i["message"]}
              for r in validate(files, None)["results"]}
    ours = Validator(load())
    assert theirs == CASES
    assert {name: slice_errors(ours.validate(bp(name))) for name in CASES} == theirs
