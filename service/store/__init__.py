"""Persistence: SQLAlchemy models, the database engine, repositories and Alembic migrations."""
