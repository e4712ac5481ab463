"""The audit trail append-only against TRUNCATE too (PostgreSQL): row triggers never see a TRUNCATE, which emptied
the trail in one statement; a statement trigger refuses it with the same function.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # SQLite has no TRUNCATE (DELETE is refused there already)
        op.execute("CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_no_truncate ON audit_events")
