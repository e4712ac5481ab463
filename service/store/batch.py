"""Rows of many resource writes sent together: a few statements for a whole transaction Bundle, not a few each.

A 1,000-entry transaction took 3,005 statements, three a resource (its row, its version, its index rows), and on
PostgreSQL each is a round trip: 2.08 s there against 1.05 s on SQLite. Held here until the unit of work sends
them (service/store/resources.Unit.batch), they take one multi-row INSERT a table.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, update

from service.store.models import ResourceRow, ResourceVersionRow, SearchIndexRow

RESOURCES = cast(Table, ResourceRow.__table__)
VERSIONS = cast(Table, ResourceVersionRow.__table__)
INDEX = cast(Table, SearchIndexRow.__table__)
#: the statements, built once: building `insert(...).values(...)` anew cost more than running it. A created row's
#: key comes back in the order the rows were sent (sort_by_parameter_order), so each version and index row gets its own.
ADD_RESOURCES = insert(RESOURCES).returning(RESOURCES.c.pk, sort_by_parameter_order=True)
SET_RESOURCE = update(RESOURCES).where(RESOURCES.c.pk == bindparam("the_pk"))
ADD_VERSIONS = insert(VERSIONS)
ADD_INDEX = insert(INDEX)
DROP_INDEX = delete(INDEX).where(INDEX.c.resource_pk == bindparam("the_pk"))
#: the key of a resource row not sent yet (keys start at 1)
UNSENT = 0

Row = dict[str, Any]


@dataclass
class Batch:
    """What writes left to send: created rows (with the version and index rows waiting for their key), changed
    rows, and the index rows of changed resources to drop. A resource is in it at most once (Unit sends it first)."""

    created: list[tuple[Row, list[Row]]] = field(default_factory=list)
    changed: list[Row] = field(default_factory=list)
    dropped: list[Row] = field(default_factory=list)
    versions: list[Row] = field(default_factory=list)
    index: list[Row] = field(default_factory=list)
    #: the resources held, each with its row's values (a created row's or a changed row's)
    keys: dict[tuple[str, str], Row] = field(default_factory=dict)

    def write(self, pk: int, key: tuple[str, str], values: Row, method: str, indexed: Iterable[Any]) -> None:
        """A resource's next version: a new row when `pk` is UNSENT (its key comes when sent), else a change of the
        row `pk` (its index rows replace those it had). `values`: the row's columns; `indexed`: its search values."""
        resource_type, resource_id = key
        version = {"resource_pk": pk, "resource_type": resource_type, "id": resource_id, "method": method,
                   **{k: values[k] for k in ("version", "deleted", "last_updated", "content")}}
        # Core, not the ORM: its bulk INSERT split the index rows by which of their values are None
        index = [{"resource_pk": pk, "resource_type": resource_type, "param": v.param, "system": v.system,
                  "value": v.value, "low": v.low, "high": v.high} for v in indexed]
        self.versions.append(version)
        self.index += index
        if pk == UNSENT:
            self.keys[key] = {"resource_type": resource_type, "id": resource_id, **values}
            self.created.append((self.keys[key], [version, *index]))
        else:
            self.keys[key] = {"the_pk": pk, **values}
            self.changed.append(self.keys[key])
            self.dropped.append({"the_pk": pk})

    def link(self, key: tuple[str, str], record_id: str) -> bool:
        """Name the clinic record of a resource held here, in the row still to be sent; False if none is held."""
        row = self.keys.get(key)
        if row is None:
            return False
        row["record_id"] = record_id
        return True

    def send(self, connection: Connection) -> dict[tuple[str, str], int]:
        """Every held row, in an order the foreign keys accept; the keys of the created rows by (type, id)."""
        made: dict[tuple[str, str], int] = {}
        if self.created:
            pks = connection.execute(ADD_RESOURCES, [row for row, _ in self.created]).scalars().all()
            for (row, waiting), pk in zip(self.created, pks, strict=True):
                made[row["resource_type"], row["id"]] = pk
                for dependent in waiting:
                    dependent["resource_pk"] = pk
        for statement, rows in ((SET_RESOURCE, self.changed), (DROP_INDEX, self.dropped),
                                (ADD_VERSIONS, self.versions), (ADD_INDEX, self.index)):
            if rows:
                connection.execute(statement, rows)
        return made
