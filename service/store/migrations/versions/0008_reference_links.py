"""The search index rebuilt under today's rules: every relative reference a resource makes (param `_link`, so a
delete can name its referrers) and each string as written beside its folded form (for `:exact`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

resources = sa.table("fhir_resources", sa.column("pk", sa.Integer), sa.column("resource_type", sa.String),
                     sa.column("deleted", sa.Boolean), sa.column("content", sa.JSON))
search_index = sa.table("fhir_search_index", sa.column("resource_pk", sa.Integer),
                        sa.column("resource_type", sa.String), sa.column("param", sa.String),
                        sa.column("system", sa.String), sa.column("value", sa.String),
                        sa.column("low", sa.DateTime), sa.column("high", sa.DateTime))


def upgrade() -> None:
    # the rule every later write indexes by, as the two row sets 0008 wrote (0014 makes them one)
    from service.search.parameters import LINK, index, unmerged

    op.create_index("ix_fhir_search_links", "fhir_search_index", ["param", "value"])
    conn = op.get_bind()
    rows = conn.execute(sa.select(resources.c.pk, resources.c.resource_type, resources.c.content)
                        .where(resources.c.deleted.is_(False))).fetchall()
    for pk, resource_type, content in rows:
        conn.execute(search_index.delete().where(search_index.c.resource_pk == pk))
        values = unmerged(index(content or {}))
        if values:
            conn.execute(search_index.insert(), [
                {"resource_pk": pk, "resource_type": resource_type, "param": v.param,
                 "system": v.path if v.param == LINK else v.system,
                 "value": v.value, "low": v.low, "high": v.high} for v in values])


def downgrade() -> None:
    op.execute(search_index.delete().where(search_index.c.param == "_link"))
    op.drop_index("ix_fhir_search_links", table_name="fhir_search_index")
