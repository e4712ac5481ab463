"""On PostgreSQL the search index's resource_type, param and value compare byte by byte (COLLATE "C"): every entry
written into ix_fhir_search_keys, ix_fhir_search_dates and ix_fhir_search_links is placed by comparing them, ~113 rows
a clinic record, and under the database's collation (a libc locale, even C.UTF-8) each comparison looked the locale
up and copied both strings for strcoll (varstr_cmp, pg_newlocale_from_collation, lc_collate_is_c). Nothing sorts by
these columns: they are matched by equality, IN and LIKE, whose answers no deterministic collation changes, and the
conditions take the columns' collation (a parameter's is the default, which gives way), so the indexes still serve
them. SQLite compares bytes (BINARY) already.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

#: the columns and their types (a migration keeps its own copy: the models move on)
COLUMNS = (("resource_type", "varchar(64)"), ("param", "varchar(64)"), ("value", "varchar(500)"))


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    changes = ", ".join(f"ALTER COLUMN {name} TYPE {kind} COLLATE {collation}" for name, kind in COLUMNS)
    op.execute(sa.text(f"ALTER TABLE fhir_search_index {changes}"))  # its indexes are made again


def upgrade() -> None:
    _collate('"C"')


def downgrade() -> None:
    _collate('"default"')
