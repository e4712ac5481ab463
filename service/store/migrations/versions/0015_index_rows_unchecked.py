"""The search index's foreign key on its resource goes, on PostgreSQL only: there every index row's check was a
trigger and a locking read of the resource row (SELECT ... FOR KEY SHARE), ~85 a clinic record, 0.4-0.7 ms of the
server's CPU a record (/work/notes/pg2-tools/inproc2.py nofk). The rows are written by the statement that writes
their resource or reads its key (store/postgres.py, BATCH_SQL), and no resource row is ever deleted (a deletion is a
version), so the key has nothing to refuse and nothing to cascade. SQLite keeps it: there it is checked inside
the write, not by a trigger's statement, and dropping it means copying the table.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: the name PostgreSQL gave it when 0002 made the table
NAME = "fhir_search_index_resource_pk_fkey"


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    for key in sa.inspect(conn).get_foreign_keys("fhir_search_index"):
        if key["referred_table"] == "fhir_resources" and key["constrained_columns"] == ["resource_pk"]:
            op.drop_constraint(key["name"] or NAME, "fhir_search_index", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_foreign_key(NAME, "fhir_search_index", "fhir_resources", ["resource_pk"], ["pk"], ondelete="CASCADE")
