"""The outbox's business keys of records whose source holds a "/" rewritten in the form that reads back
unambiguously (exchange/outbox.business_key): `kind//length/source/external_id`. In the plain form
`kind/source/external_id` two records could share a key (source "clinic/x", id "1" and source "clinic", id "x/1"),
and the second's job superseded the first's, which was then never sent. Keys of sources without a "/" are unchanged.
A job lost so is queued again (LOST). Downgrade writes the plain form back (and leaves those jobs queued); it fails
(the in-flight uniqueness) where two such records have jobs in flight at once, which the plain form cannot hold apart.

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


#: a job the plain key lost: superseded by a job of another record (one key is one record's, so only a clash did that),
#: and its own record queued nothing for that endpoint after it, so nothing of that record reached the EHR since
LOST = sa.text("UPDATE outbox_jobs SET state = 'queued', superseded_by = NULL, finished_at = NULL "
               "WHERE state = 'done' AND superseded_by IS NOT NULL "
               "AND EXISTS (SELECT 1 FROM outbox_jobs s WHERE s.pk = outbox_jobs.superseded_by "
               "AND s.record_id <> outbox_jobs.record_id) "
               "AND NOT EXISTS (SELECT 1 FROM outbox_jobs n WHERE n.endpoint = outbox_jobs.endpoint "
               "AND n.record_id = outbox_jobs.record_id AND n.pk > outbox_jobs.pk)")


def upgrade() -> None:
    _rewrite("{kind}//{length}/{source}/{id}")
    op.get_bind().execute(LOST)  # queued again, under the key that is now its own


def downgrade() -> None:
    _rewrite("{kind}/{source}/{id}")
