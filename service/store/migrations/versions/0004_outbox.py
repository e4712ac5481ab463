"""Outbox: one job per (record version, EHR endpoint) and every attempt to deliver it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_jobs",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("record_kind", sa.String(32), nullable=False),
        sa.Column("record_version", sa.Integer(), nullable=False),
        sa.Column("business_key", sa.String(500), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_outcome", sa.JSON(), nullable=True),
        sa.Column("written", sa.JSON(), nullable=True),
        sa.Column("superseded_by", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=False), nullable=True),
    )
    op.create_index("ix_outbox_claim", "outbox_jobs", ["state", "next_attempt_at"])
    op.create_index("ix_outbox_key", "outbox_jobs", ["endpoint", "business_key", "pk"])
    op.create_index("ix_outbox_record", "outbox_jobs", ["record_id"])
    # The database itself refuses a second in-flight job for the same (endpoint, business key).
    op.create_index("uq_outbox_in_flight", "outbox_jobs", ["endpoint", "business_key"], unique=True,
                    sqlite_where=sa.text("state = 'in_flight'"), postgresql_where=sa.text("state = 'in_flight'"))
    op.create_table(
        "outbox_attempts",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_pk", sa.Integer(), sa.ForeignKey("outbox_jobs.pk", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("result", sa.String(16), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("outcome", sa.JSON(), nullable=True),
        sa.UniqueConstraint("job_pk", "number", name="uq_outbox_attempts"),
    )


def downgrade() -> None:
    op.drop_table("outbox_attempts")
    op.drop_index("uq_outbox_in_flight", table_name="outbox_jobs")
    op.drop_index("ix_outbox_record", table_name="outbox_jobs")
    op.drop_index("ix_outbox_key", table_name="outbox_jobs")
    op.drop_index("ix_outbox_claim", table_name="outbox_jobs")
    op.drop_table("outbox_jobs")
