"""The outbox's business keys of records whose source holds a "/" rewritten in the form that reads back
unambiguously (exchange/outbox.business_key): `kind//length/source/external_id`. In the plain form
`kind/source/external_id` two records could share a key (source "clinic/x", id "1" and source "clinic", id "x/1"),
and the second's job superseded the first's, which was then never sent. Keys of sources without a "/" are unchanged.
Downgrade writes the plain form back; it fails (the in-flight uniqueness) where two such records have jobs in flight
at once, which the plain form cannot hold apart.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

#: the jobs whose record's source holds a "/", with what their key is made of
AFFECTED = sa.text("SELECT j.pk, r.kind, r.source, r.external_id FROM outbox_jobs j "
                   "JOIN records r ON r.id = j.record_id WHERE r.source LIKE '%/%'")
SET_KEY = sa.text("UPDATE outbox_jobs SET business_key = :key WHERE pk = :pk")


def _rewrite(key: str) -> None:
    conn = op.get_bind()
    rows = conn.execute(AFFECTED).all()
    if rows:
        conn.execute(SET_KEY, [{"pk": pk, "key": key.format(kind=kind, source=source, length=len(source), id=ext)}
                               for pk, kind, source, ext in rows])


def upgrade() -> None:
    _rewrite("{kind}//{length}/{source}/{id}")


def downgrade() -> None:
    _rewrite("{kind}/{source}/{id}")
