"""FHIR resources, their versions, search index and conditional-create claims.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fhir_resources",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=False), nullable=False),
        sa.Column("content", sa.JSON(), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("record_id", sa.String(36), nullable=True),
        sa.UniqueConstraint("resource_type", "id", name="uq_fhir_resources_identity"),
    )
    op.create_index("ix_fhir_resources_type_updated", "fhir_resources", ["resource_type", "last_updated"])
    op.create_table(
        "fhir_resource_versions",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("resource_pk", sa.Integer(), sa.ForeignKey("fhir_resources.pk", ondelete="RESTRICT"),
                  nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=False), nullable=False),
        sa.Column("content", sa.JSON(), nullable=True),
        sa.UniqueConstraint("resource_pk", "version", name="uq_fhir_versions"),
    )
    op.create_index("ix_fhir_versions_type_updated", "fhir_resource_versions", ["resource_type", "last_updated"])
    op.create_table(
        "fhir_search_index",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("resource_pk", sa.Integer(), sa.ForeignKey("fhir_resources.pk", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("system", sa.String(500), nullable=True),
        sa.Column("value", sa.String(500), nullable=True),
        sa.Column("low", sa.DateTime(timezone=False), nullable=True),
        sa.Column("high", sa.DateTime(timezone=False), nullable=True),
    )
    op.create_index("ix_fhir_search_value", "fhir_search_index", ["resource_type", "param", "value"])
    op.create_index("ix_fhir_search_dates", "fhir_search_index", ["resource_type", "param", "low", "high"])
    op.create_index("ix_fhir_search_resource", "fhir_search_index", ["resource_pk"])
    op.create_table(
        "fhir_conditional_claims",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("criteria", sa.String(1000), nullable=False),
        sa.Column("resource_pk", sa.Integer(), sa.ForeignKey("fhir_resources.pk", ondelete="CASCADE"),
                  nullable=False),
        sa.UniqueConstraint("resource_type", "criteria", name="uq_fhir_claims"),
    )


def downgrade() -> None:
    op.drop_table("fhir_conditional_claims")
    op.drop_index("ix_fhir_search_resource", table_name="fhir_search_index")
    op.drop_index("ix_fhir_search_dates", table_name="fhir_search_index")
    op.drop_index("ix_fhir_search_value", table_name="fhir_search_index")
    op.drop_table("fhir_search_index")
    op.drop_index("ix_fhir_versions_type_updated", table_name="fhir_resource_versions")
    op.drop_table("fhir_resource_versions")
    op.drop_index("ix_fhir_resources_type_updated", table_name="fhir_resources")
    op.drop_table("fhir_resources")
