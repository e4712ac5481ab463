"""The search index's date and link indexes hold only the rows they are read for: date ranges (low set) and
reference links (param `_link`). Every other row cost each of them an entry nobody read.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: as service/store/models.py's DATE_ROWS and LINK_ROWS (a migration keeps its own copy: the models move on)
DATE_ROWS = "low IS NOT NULL"
LINK_ROWS = "param = '_link'"


def upgrade() -> None:
    op.drop_index("ix_fhir_search_dates", table_name="fhir_search_index")
    op.drop_index("ix_fhir_search_links", table_name="fhir_search_index")
    op.create_index("ix_fhir_search_dates", "fhir_search_index", ["resource_type", "param", "low", "high"],
                    sqlite_where=sa.text(DATE_ROWS), postgresql_where=sa.text(DATE_ROWS))
    op.create_index("ix_fhir_search_links", "fhir_search_index", ["param", "value"],
                    sqlite_where=sa.text(LINK_ROWS), postgresql_where=sa.text(LINK_ROWS))


def downgrade() -> None:
    op.drop_index("ix_fhir_search_links", table_name="fhir_search_index")
    op.drop_index("ix_fhir_search_dates", table_name="fhir_search_index")
    op.create_index("ix_fhir_search_links", "fhir_search_index", ["param", "value"])
    op.create_index("ix_fhir_search_dates", "fhir_search_index", ["resource_type", "param", "low", "high"])
