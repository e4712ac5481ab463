"""service/store/identified.held_once: the one live resource holding each identifier, in one search for them all
(what the outbox worker's people at send time and the console's current patient both ask)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import event

from service.app.runtime import Runtime
from service.store.identified import held_once

MRN = "https://clinic.example/mrn"


def patient(mrn: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": "https://other.example/id", "value": family},
                                                      {"system": MRN, "value": mrn}], "name": [{"family": family}]}


def test_each_identifier_held_by_one_live_resource_is_found_in_one_search(runtime: Runtime) -> None:
    with runtime.resources.unit(write=True) as unit:
        for n, (mrn, family) in enumerate([("1", "Ada"), ("2", "Bo"), ("3", "Cy"), ("3", "Di"), ("4", "Ed")]):
            unit.write("Patient", f"p{n}", patient(mrn, family), [], "PUT")
        unit.write("Patient", "p4", None, [], "DELETE")  # Ed: deleted
    selects: list[str] = []

    def counted(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        selects.extend([statement] if statement.lstrip().upper().startswith("SELECT") else [])

    event.listen(runtime.engine, "before_cursor_execute", counted)
    try:
        with runtime.resources.unit() as unit:
            found = held_once(unit, "Patient", [(MRN, m) for m in ("1", "2", "3", "4", "5")] + [(MRN, "1")])
    finally:
        event.remove(runtime.engine, "before_cursor_execute", counted)

    assert {key: person["name"][0]["family"] for key, person in found.items()} == {(MRN, "1"): "Ada", (MRN, "2"): "Bo"}
    assert found[MRN, "1"]["meta"]["versionId"] == "1"  # the stored resource, as held
    assert len(selects) == 1  # two holding MRN 3, a deleted one and an unknown one, all in the same search
    assert held_once(unit, "Patient", []) == {}
