"""Exchange console: a heartbeat row per outbox worker (the dashboard says which are alive), and console tasks
(a sandbox-check an admin started, run in the background, its progress kept for the endpoint's page).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_workers",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("endpoints", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
    )
    op.create_table(
        "console_tasks",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("run_by", sa.String(64), nullable=False),
    )
    op.create_index("ix_console_tasks_latest", "console_tasks", ["endpoint", "kind", "pk"])


def downgrade() -> None:
    op.drop_index("ix_console_tasks_latest", table_name="console_tasks")
    op.drop_table("console_tasks")
    op.drop_table("outbox_workers")
