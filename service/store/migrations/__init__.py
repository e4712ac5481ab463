"""Alembic migration environment (configured in code by service.store.migrate; no alembic.ini)."""
