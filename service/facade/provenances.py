"""The Provenance of a write (facade/interactions.py, bundles.py), written in its unit of work: for a request's
create, drafted before the unit (every other SQLite writer waits for a unit) but for its time."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.search.parameters import cut, date_range
from service.security.provenance import provenance
from service.store.batch import Drafted, Indexed, rest_of, serialise
from service.store.resources import Unit
from service.store.stored import instant


def write_provenance(unit: Unit, versions: list[tuple[str, bool, datetime]], told: ProvenanceAhead | None = None
                     ) -> None:
    """The Provenance of one write (a request, a transaction Bundle, a record's resources): one for the versions
    it created and one for those it updated (R4 gives a Provenance one activity), each naming them all. One per
    version doubled the rows a record or a Bundle wrote. `told`: the Provenance of a version created, drafted before
    the unit (provenance_ahead), used when it is this one's."""
    for created in (True, False):
        targets = [target for target, made, _ in versions if made is created]
        if targets:
            recorded = instant(max(at for _, made, at in versions if made is created))
            rows: list[Indexed] | None
            rest: str | None
            if told is not None and created and targets == [told.target] and told.by == (unit.author, unit.record_id):
                content, rows, rest = told.recorded(recorded)
            else:
                content = provenance(targets, created, recorded, unit.author, unit.record_id)
                rows = provenance_rows(targets, recorded)
                rest = None if rows is None else rest_of(content)
            unit.write("Provenance", str(uuid.uuid4()), content, [], "POST", new=True,
                       drafted=None if rows is None or rest is None else Drafted(rows, rest))


#: what stands for `recorded` in a Provenance drafted before its unit (provenance_ahead), which knows it
RECORDED = "kfhir:recorded"


@dataclass(frozen=True)
class ProvenanceAhead:
    """The Provenance write_provenance writes of one created version `target`, for `by` (the unit's author and
    record), drafted before the unit (every other SQLite writer waits for a unit): its content, index rows and JSON
    text but for `recorded` (RECORDED stands for it), the unit's time. ~0.1 M instructions of a facade create's."""

    target: str
    by: tuple[tuple[str, str] | None, str | None]
    content: dict[str, Any]
    rows: list[Indexed]
    rest: str

    def recorded(self, recorded: str) -> tuple[dict[str, Any], list[Indexed], str]:
        """Its content, index rows and rest_of text, recorded at `recorded`."""
        return ({**self.content, "recorded": recorded}, self.rows + _recorded_row(recorded),
                self.rest.replace(serialise(RECORDED), serialise(recorded)))


def provenance_ahead(author: tuple[str, str] | None, target: str) -> ProvenanceAhead | None:
    """write_provenance's Provenance of a request's created version `target` for `author`, drafted (ProvenanceAhead);
    None where it would not write it as drafted: a target provenance_rows does not make, a text holding the mark
    elsewhere (a client's name)."""
    content = provenance([target], True, RECORDED, author)
    rows, rest = provenance_rows([target], RECORDED), rest_of(content)
    if rows is None or rest.count(serialise(RECORDED)) != 1:
        return None
    return ProvenanceAhead(target, (author, None), content, rows, rest)


def provenance_rows(targets: list[str], recorded: str) -> list[Indexed] | None:
    """The index rows of write_provenance's Provenance of `targets` (`Type/id/_history/n`, as _write names them)
    recorded at `recorded`, as index_rows(index(it)) makes them: its `target` rows, its `patient` rows (the Patients
    among them), its `recorded` row. Made from the targets as they are, not from references parsed back (~0.2 M
    instructions a clinic record of 9 versions, in the writers' turn). None for a target that is not `Type/id`
    followed by its version: index() is asked."""
    keys = [target.split("/_history/")[0] for target in targets]
    if not all(key.count("/") == 1 and key[:1].isupper() and not key.endswith("/") for key in keys):
        return None
    rows: list[Indexed] = [("Provenance", "target", None, cut(key), None, None, None) for key in keys]
    rows += [("Provenance", "patient", None, cut(key), None, None, None) for key in keys if key.startswith("Patient/")]
    return rows + _recorded_row(recorded)


def _recorded_row(recorded: str) -> list[Indexed]:
    """The `recorded` index row of a Provenance recorded at `recorded` (none for a text that is no date)."""
    found = date_range(recorded)
    return [] if found is None else [("Provenance", "recorded", None, None, found[0], found[1], None)]
