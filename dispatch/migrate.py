"""Apply Alembic migrations (used by `coop-dispatch migrate` and the test setup)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def schema_problem(revisions: list[str]) -> str | None:
    """Why code at this migration head cannot run on a database at these revisions, or None."""
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    if revisions == [head]:
        return None
    at = f"revision {', '.join(revisions)}" if revisions else "no revision (never migrated)"
    known = {script.revision for script in scripts.walk_revisions()}
    if all(revision in known for revision in revisions):
        return f"the database is at {at}, this code needs {head}: run `coop-dispatch migrate`"
    return f"the database is at {at}, which this code does not know (it needs {head})"


def upgrade(revision: str = "head") -> None:
    command.upgrade(alembic_config(), revision)
