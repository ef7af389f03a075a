from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from treu.db.base import Base
from treu.models import load_all

load_all()

config = context.config
url: str = config.attributes.get("database_url") or ""
if not url:
    from treu.config import get_settings

    url = get_settings().database_url

target_metadata = Base.metadata


def run_offline() -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
