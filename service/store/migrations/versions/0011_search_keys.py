"""Search indexes a search reads without the rows behind them: a type's live resources (resource_type, deleted),
and the resources a value finds (resource_type, param, value, resource_pk, in place of ix_fhir_search_value).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_fhir_resources_live", "fhir_resources", ["resource_type", "deleted"])
    op.create_index("ix_fhir_search_keys", "fhir_search_index", ["resource_type", "param", "value", "resource_pk"])
    op.drop_index("ix_fhir_search_value", table_name="fhir_search_index")


def downgrade() -> None:
    op.create_index("ix_fhir_search_value", "fhir_search_index", ["resource_type", "param", "value"])
    op.drop_index("ix_fhir_search_keys", table_name="fhir_search_index")
    op.drop_index("ix_fhir_resources_live", table_name="fhir_resources")
