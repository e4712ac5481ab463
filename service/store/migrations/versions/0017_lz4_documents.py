"""On PostgreSQL the columns holding whole documents compress with lz4 where the server has it, not pglz: a stored
value over ~2 KB is compressed to fit its row (a MedicationAdministration of ~2.2 KB, an Observation of ~2 KB, an audit
event, each resource twice: its row and its version), and pglz_compress was 7.2 % of a clinic record's backend
instructions (0.94 M of 12.99 M; /work/notes/pg-tools/pgprofile.py). Reads decompress them too (a search page of
administrations). Values stored before keep pglz and read as before; what is read back is the same text either way.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

#: (table, column) of each document column (a migration keeps its own list: the models move on)
COLUMNS = (("fhir_resources", "content"), ("fhir_resource_versions", "content"), ("records", "content"),
           ("record_versions", "content"), ("outbox_jobs", "payload"), ("audit_events", "content"))


def _set(method: str) -> None:
    for table, column in COLUMNS:
        op.execute(sa.text(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}"))


def _methods() -> list[str]:
    """The compression methods the server offers: none before PostgreSQL 14 (no default_toast_compression, and no
    SET COMPRESSION either), pglz alone on a server built without lz4."""
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return []
    found = conn.execute(sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"))
    return list(found.scalar() or [])


def upgrade() -> None:
    if "lz4" in _methods():
        _set("lz4")


def downgrade() -> None:
    if "lz4" in _methods():  # where the upgrade could not set it, there is nothing to undo (nor SET COMPRESSION)
        _set("DEFAULT")
