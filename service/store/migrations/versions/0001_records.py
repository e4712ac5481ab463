"""Records and their versions.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("patient_system", sa.String(500), nullable=False),
        sa.Column("patient_value", sa.String(200), nullable=False),
        sa.Column("clinical_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
        sa.UniqueConstraint("kind", "source", "external_id", name="uq_records_identity"),
    )
    op.create_index("ix_records_kind_patient", "records", ["kind", "patient_value", "patient_system"])
    op.create_index("ix_records_kind_clinical_at", "records", ["kind", "clinical_at"])
    op.create_table(
        "record_versions",
        sa.Column("record_pk", sa.Integer(), sa.ForeignKey("records.pk", ondelete="RESTRICT"), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("record_versions")
    op.drop_index("ix_records_kind_clinical_at", table_name="records")
    op.drop_index("ix_records_kind_patient", table_name="records")
    op.drop_table("records")
