from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from treu.db.session import Database
from treu.migrations import downgrade, upgrade


def test_upgrade_creates_the_sqlite_folder_of_a_fresh_checkout(tmp_path: Path) -> None:
    path = tmp_path / "var" / "nested" / "treu.db"
    upgrade(f"sqlite:///{path}")
    db = Database(f"sqlite:///{path}")
    assert {"programmes", "members", "postings", "lots", "accounts", "events"} <= set(
        inspect(db.write_engine).get_table_names()
    )
    db.dispose()


def test_migrations_go_down_and_up_again(fresh_db: Database) -> None:
    url = fresh_db.url
    fresh_db.dispose()
    downgrade(url, "base")
    assert "postings" not in inspect(fresh_db.write_engine).get_table_names()
    upgrade(url)
    assert "postings" in inspect(fresh_db.write_engine).get_table_names()


def test_models_match_the_migrations(db: Database) -> None:
    """Every table, column, index and constraint the models declare is what ``alembic
    upgrade head`` built (a model changed without its migration fails here)."""
    from treu.db.base import Base
    from treu.models import load_all

    load_all()

    with db.write_engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
