"""Admin console: accounts, the sign-in throttle and generated secrets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_accounts",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("session_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("last_sign_in_at", sa.DateTime(timezone=False), nullable=True),
    )
    op.create_table(
        "admin_sign_in_throttle",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=False), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=False), nullable=False),
    )
    op.create_table(
        "admin_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("admin_secrets")
    op.drop_table("admin_sign_in_throttle")
    op.drop_table("admin_accounts")
