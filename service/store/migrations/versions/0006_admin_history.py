"""Admin console: the versions of each mapping file the service has run (history and diffs), and the
capability checks and sandbox-checks admins ran against each EHR endpoint.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mapping_versions",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("spec_text", sa.Text(), nullable=False),
        sa.Column("people_text", sa.Text(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=False), nullable=False),
        sa.UniqueConstraint("kind", "digest", name="uq_mapping_versions"),
    )
    op.create_table(
        "endpoint_checks",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("run_by", sa.String(64), nullable=False),
    )
    op.create_index("ix_endpoint_checks_latest", "endpoint_checks", ["endpoint", "kind", "pk"])


def downgrade() -> None:
    op.drop_index("ix_endpoint_checks_latest", table_name="endpoint_checks")
    op.drop_table("endpoint_checks")
    op.drop_table("mapping_versions")
