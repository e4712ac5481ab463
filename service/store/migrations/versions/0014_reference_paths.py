"""A relative reference a search parameter reads is one index row, not two: its `_link` row (0008: what a delete's
referrer check reads) and its parameter's row held the same value (a clinic record: ~22 of ~98 rows). The rows gain
`path`, the reference's path, set on every relative reference's row; a link a parameter's row of the same resource and
value reads becomes that row (the `_link` row keeps its key and takes the parameter's name, the parameter's own row
goes), and the other `_link` rows keep their param. Referrers are the rows with a path (search/parameters.index).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: by type, each path one reference parameter reads and that parameter, as search/parameters.REFERENCE_PATHS says at
#: 0014 (a migration keeps its own copy: the parameters move on). Provenance has no `_link` rows.
SUBJECT = {"subject": "subject"}
PATHS: dict[str, dict[str, str]] = {
    "Encounter": SUBJECT, "Condition": SUBJECT, "CarePlan": SUBJECT, "Goal": SUBJECT, "MedicationRequest": SUBJECT,
    "AdverseEvent": SUBJECT,
    "MedicationAdministration": {**SUBJECT, "context": "context", "request": "request"},
    "MedicationStatement": {**SUBJECT, "context": "context", "informationSource": "source"},
    "Procedure": {**SUBJECT, "encounter": "encounter", "performer.actor": "performer", "basedOn": "based-on"},
    "Observation": {**SUBJECT, "encounter": "encounter", "partOf": "part-of"},
    "DetectedIssue": {"patient": "patient", "implicated": "implicated"},
}
#: as service/store/models.py's LINK_ROWS, before and after
OLD_LINKS = "param = '_link'"
LINKS = "path IS NOT NULL"
#: resources whose rows are read and rewritten together
CHUNK = 5_000
_POSITIONS = re.compile(r"\[\d+\]")

index = sa.table("fhir_search_index", sa.column("pk", sa.Integer), sa.column("resource_pk", sa.Integer),
                 sa.column("resource_type", sa.String), sa.column("param", sa.String), sa.column("system", sa.String),
                 sa.column("value", sa.String), sa.column("path", sa.String))


def upgrade() -> None:
    op.add_column("fhir_search_index", sa.Column("path", sa.String(500), nullable=True))
    op.drop_index("ix_fhir_search_links", table_name="fhir_search_index")
    conn = op.get_bind()
    conn.execute(sa.text(f"UPDATE fhir_search_index SET path = system, system = NULL WHERE {OLD_LINKS}"))  # noqa: S608
    first, last = conn.execute(sa.text(f"SELECT min(resource_pk), max(resource_pk) FROM fhir_search_index "  # noqa: S608
                                       f"WHERE {OLD_LINKS}")).one()
    for start in range(first or 0, (last or -1) + 1, CHUNK):
        _merge(conn, start, start + CHUNK)
    op.create_index("ix_fhir_search_links", "fhir_search_index", ["value"],
                    sqlite_where=sa.text(LINKS), postgresql_where=sa.text(LINKS))
    # token and reference values are held by their first 500 characters from now on (search/parameters.INDEXED), as
    # searches for them are cut: longer ones only SQLite could hold (PostgreSQL refused the write)
    for column in ("system", "value"):
        conn.execute(sa.text(f"UPDATE fhir_search_index SET {column} = substr({column}, 1, 500) "  # noqa: S608
                             f"WHERE length({column}) > 500"))


def _merge(conn: Any, start: int, end: int) -> None:
    """The links of the resources keyed start <= pk < end that a parameter's row reads: each link row takes the
    parameter's name (its key, and so the order Unit.referrers lists it in, stays) and one such row of the same value
    goes."""
    within = index.c.resource_pk.between(start, end - 1)
    links = conn.execute(sa.select(index.c.pk, index.c.resource_pk, index.c.resource_type, index.c.path,
                                   index.c.value).where(within, index.c.param == "_link").order_by(index.c.pk)).all()
    wanted = {(t, name) for _, _, t, _, _ in links for name in PATHS.get(t, {}).values()}
    waiting: dict[tuple[int, str, str], list[int]] = defaultdict(list)
    if wanted:
        rows = conn.execute(sa.select(index.c.pk, index.c.resource_pk, index.c.resource_type, index.c.param,
                                      index.c.value).where(within, index.c.path.is_(None), index.c.system.is_(None),
                                                           index.c.param.in_(sorted({name for _, name in wanted})))
                            .order_by(index.c.pk)).all()
        for pk, resource_pk, resource_type, param, value in rows:
            if (resource_type, param) in wanted:
                waiting[resource_pk, param, value].append(pk)
    named, dropped = [], []
    for pk, resource_pk, resource_type, path, value in links:
        param = PATHS.get(resource_type, {}).get(_POSITIONS.sub("", (path or "").partition(".")[2]))
        same = waiting.get((resource_pk, param, value)) if param else None
        if same:
            named.append({"the_pk": pk, "the_param": param})
            dropped.append({"the_pk": same.pop(0)})
    if named:
        conn.execute(index.update().where(index.c.pk == sa.bindparam("the_pk")).values(param=sa.bindparam("the_param")),
                     named)
        conn.execute(index.delete().where(index.c.pk == sa.bindparam("the_pk")), dropped)


def downgrade() -> None:
    # constants of this file only
    copy = ("INSERT INTO fhir_search_index (resource_pk, resource_type, param, value) "  # noqa: S608
            f"SELECT resource_pk, resource_type, param, value FROM fhir_search_index WHERE {LINKS} "
            "AND param <> '_link'")
    op.execute(sa.text(copy))  # each parameter's own row again; the row with the path is the link it was
    op.execute(sa.text(f"UPDATE fhir_search_index SET param = '_link', system = path WHERE {LINKS}"))  # noqa: S608
    op.drop_index("ix_fhir_search_links", table_name="fhir_search_index")
    op.drop_column("fhir_search_index", "path")
    op.create_index("ix_fhir_search_links", "fhir_search_index", ["param", "value"],
                    sqlite_where=sa.text(OLD_LINKS), postgresql_where=sa.text(OLD_LINKS))
