"""Alembic environment: runs migrations on the connection service.store.migrate passes in."""
from __future__ import annotations

from alembic import context

from service.store.migrate import compared
from service.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  include_object=compared(connection.dialect.name))
with context.begin_transaction():
    context.run_migrations()
