"""Apply Alembic migrations from code (``ketamine-fhir db upgrade``) and report whether the schema is current."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision` in one transaction; running it again changes nothing."""
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database back to `revision` in one transaction (each migration's downgrade, newest first)."""
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def compared(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """Alembic's include_object on `dialect`: what the models make only on another dialect (ddl_if, as the search
    index's foreign key, SQLite's only) is not compared with the database."""
    def include(obj: Any, _name: str | None, _type: str, reflected: bool, _compare_to: Any) -> bool:
        made_if = getattr(obj, "_ddl_if", None)
        if reflected or made_if is None or made_if.dialect is None:
            return True
        return dialect in ((made_if.dialect,) if isinstance(made_if.dialect, str) else made_if.dialect)
    return include
