from __future__ import annotations

from pathlib import Path

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
