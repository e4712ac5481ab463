"""The HL7 validator (HAPI's, at the HL7 CLI's defaults) orders a Range's bounds in the same unit as we do
(tests/validation/test_range_order.py), on the same Observations.

Where the units differ we say rng-2 could not be evaluated (an informational finding: no UCUM conversion here). The
HL7 validator fails rng-2 on three of those four even though each low is at most its high (5 mg <= 2 g throws
HAPI-0676 inside its UCUM comparison, which fails the constraint; 1 tablets <= 3 capsules and 1 mg <= 2 (no unit)
fail too) and passes the fourth (1 mg coded <= 2 "mg" as text). No file of the agreement corpus has a Range whose
bounds' units differ; this test pins what each side says there."""
from __future__ import annotations

import json
from pathlib import Path

from peers.hapi_validator import errors, validate
from validation.test_range_order import CASES, observation, validator

#: the HL7 validator's rng-2 error where the bounds' units differ (see above)
HL7_WHERE_UNITS_DIFFER = {"mg-g": True, "coded-uncoded": False, "text-units-differ": True, "one-unit": True}


def test_rng_2_verdicts_are_the_hl7_validators_where_the_units_are_the_same(tmp_path: Path) -> None:
    files = []
    for name in CASES:
        (tmp_path / f"{name}.json").write_text(json.dumps(observation(name)), encoding="utf-8")
        files.append(tmp_path / f"{name}.json")
    theirs = {Path(r["file"]).stem: any("rng-2" in i["message"] for i in errors(r))
              for r in validate(files, None)["results"]}
    mine = {name: any("rng-2" in f.message for f in validator().validate(observation(name)) if f.severity == "error")
            for name in CASES}
    same = {name for name, (_, _, verdict) in CASES.items() if verdict != "unevaluated"}
    assert {n: theirs[n] for n in same} == {n: mine[n] for n in same} == {n: CASES[n][2] == "fails" for n in same}
    assert {n: theirs[n] for n in set(CASES) - same} == HL7_WHERE_UNITS_DIFFER
    assert not any(mine[n] for n in HL7_WHERE_UNITS_DIFFER)
