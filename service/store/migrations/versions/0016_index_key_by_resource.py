"""On PostgreSQL the search index's primary key becomes (resource_pk, pk) and ix_fhir_search_resource goes: each index
row is written into four indexes, not five (a clinic record's backend: 13.45 M instructions against 12.99 M, -3.5 %;
79.3 KB of WAL against 75.4 KB; callgrind on the backend, /work/notes/pg-tools/pgcpu.py). ix_fhir_search_links holds
(value, pk), on both backends.

* What read ix_fhir_search_resource (a changed resource's rows dropped, a date sort's and a chain's rows of one
  resource, a date search merged in key order) reads the key's index by its first column, the same plans and buffers.
* No statement looked a row up by pk alone. The one plan that read the key's index, a delete's referrer lookup
  (Unit.referrers: the first 20 in key order), walked every index row in key order until it had 20 of the value:
  84-92 buffers for a patient whose rows came early, 485 for one whose came late, among ~29,000 rows. Its index now
  gives a value's rows in key order itself: 66-69. SQLite's did already (an entry ends in the rowid, pk), and reads
  it as before; it holds (value, pk) too, so that the models declare one index for both.

SQLite keeps its key and ix_fhir_search_resource: its pk is the table's rowid, no index of its own, and changing the
key means copying the table.
Every statement's plan before and after, on the same data: /work/notes/pg-tools/README.md.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TABLE = "fhir_search_index"
#: the name PostgreSQL gave it when 0002 made the table, kept for the new key
NAME = "fhir_search_index_pkey"
#: as service/store/models.py's LINK_ROWS (a migration keeps its own copy: the models move on)
LINKS = "path IS NOT NULL"


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        op.drop_constraint(sa.inspect(conn).get_pk_constraint(TABLE)["name"] or NAME, TABLE, type_="primary")
        op.create_primary_key(NAME, TABLE, ["resource_pk", "pk"])
        op.drop_index("ix_fhir_search_resource", table_name=TABLE)
    _links(["value", "pk"])


def downgrade() -> None:
    _links(["value"])
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_fhir_search_resource", TABLE, ["resource_pk"])
        op.drop_constraint(NAME, TABLE, type_="primary")
        op.create_primary_key(NAME, TABLE, ["pk"])


def _links(columns: list[str]) -> None:
    """ix_fhir_search_links made again of `columns`, of the rows with a path."""
    op.drop_index("ix_fhir_search_links", table_name=TABLE)
    op.create_index("ix_fhir_search_links", TABLE, columns, sqlite_where=sa.text(LINKS),
                    postgresql_where=sa.text(LINKS))
