"""EHR endpoints recorded in the database, so every process (web, worker, CLI) enqueues for the same ones whatever
file it read; KFHIR_ENDPOINTS_FILE becomes an import into this table.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("base_url", sa.String(2000), nullable=False),
        sa.Column("auth", sa.JSON(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("max_entries", sa.Integer(), nullable=False),
        sa.Column("timeout_s", sa.Float(), nullable=False),
        sa.Column("kinds", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("added_by", sa.String(200), nullable=False),
        sa.Column("enabled_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("endpoints")
