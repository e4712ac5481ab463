"""service/store/batch: the rows a batch sends are those the models' column types would write: a resource's JSON
text in its row and its version row, JSON null for a deletion, and each index row's times as the DateTime type binds them."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import DateTime, bindparam, text

from service.app.runtime import Runtime
from service.search.parameters import index
from service.store.batch import UNSENT
from service.store.stored import StoredResource

pytestmark = pytest.mark.both_backends  # the driver's executemany and the JSON and time columns differ by backend


def observation(at: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Hé rate"}]},
            "effectiveDateTime": at, "valueQuantity": {"value": 72, "unit": "/min"}}


def test_the_rows_sent_are_those_the_column_types_write(runtime: Runtime) -> None:
    with runtime.resources.unit(write=True) as unit, unit.batch():
        unit.write("Patient", "p", {"resourceType": "Patient", "name": [{"family": "Ōta"}]}, [], "PUT")
        unit.write("Observation", "o1", observation("2026-03-02T13:12:02-05:00"), [], "PUT")  # a whole second
        unit.write("Observation", "o2", observation("2026-03-02T13:12:02.25-05:00"), [], "PUT")
    with runtime.resources.unit(write=True) as unit:  # sent alone: a change, then a deletion
        unit.write("Observation", "o1", observation("2026-03-03"), [], "PUT")
        unit.write("Observation", "o2", None, [], "DELETE")

    with runtime.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT r.id, CAST(r.content AS TEXT), v.version, CAST(v.content AS TEXT) FROM fhir_resources r "
            "JOIN fhir_resource_versions v ON v.resource_pk = r.pk ORDER BY r.id, v.version")).all()
        assert [(row[0], row[2]) for row in rows] == [("o1", 1), ("o1", 2), ("o2", 1), ("o2", 2), ("p", 1)]
        latest = {row[0]: row for row in rows if row[2] == (2 if row[0] != "p" else 1)}
        for current, version in ((row[1], row[3]) for row in latest.values()):  # the row and its last version: the same text
            assert current == version
        assert latest["o2"][1] == "null"  # a deletion: JSON null, as the JSON type writes None, not SQL NULL
        for name in ("p", "o1"):
            content = json.loads(latest[name][1])
            assert latest[name][1] == json.dumps(content)  # the text json.dumps makes, as the JSON type's
            assert content["meta"]["versionId"] == str(latest[name][2])
        assert json.loads(rows[2][3])["effectiveDateTime"].endswith("02.25-05:00")  # o2's first version kept

        found = connection.execute(text(
            "SELECT r.id, i.resource_type, i.param, i.system, i.value, CAST(i.low AS TEXT), CAST(i.high AS TEXT) "
            "FROM fhir_search_index i JOIN fhir_resources r ON r.pk = i.resource_pk ORDER BY i.pk")).all()
        def stored(value: Any) -> str | None:  # the text a time becomes as the DateTime type binds it
            return None if value is None else str(connection.execute(text("SELECT CAST(:t AS TEXT)").bindparams(
                bindparam("t", value, type_=DateTime()))).scalar_one())

        expected = [(name, resource_type, v.param, v.system, v.value, stored(v.low), stored(v.high))
                    for name, resource_type in (("p", "Patient"), ("o1", "Observation"))
                    for v in index(json.loads(latest[name][1]))]
    assert sorted(found, key=repr) == sorted(expected, key=repr)  # o2, deleted, has none; o1 only its second's
    assert any(row[5] is not None for row in found)  # times among them


def test_a_sent_rows_key_keeps_every_other_field_of_its_version() -> None:
    """What a batch's row gets once sent, its key (StoredResource.with_pk), changes nothing else of the version."""
    written = StoredResource(UNSENT, "Observation", "o1", 3, False, datetime(2026, 3, 2, 13, 12, 2, 250000),
                             observation("2026-03-02"), [{"severity": "warning"}], "record-1", "PUT", '{"a": 1}')
    assert written.with_pk(7) == dataclasses.replace(written, pk=7)
    assert written.with_pk(7).text == '{"a": 1}'  # not compared: kept all the same


def test_a_row_of_the_resources_table_gives_a_stored_resources_fields_in_their_order() -> None:
    """Unit._current makes a StoredResource of a row read on SQLite's own cursor by position (select(RESOURCES)
    gives the table's columns in its order): a column added or moved in fhir_resources must fail here, not fill
    another field."""
    from service.store.models import ResourceRow

    columns = [column.name for column in ResourceRow.__table__.columns]
    assert columns == [f.name for f in dataclasses.fields(StoredResource)][:len(columns)]
    # a version's only, and the text its write had (Unit.write)
    assert [f.name for f in dataclasses.fields(StoredResource)][len(columns):] == ["method", "text"]
