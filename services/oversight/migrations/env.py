"""Alembic environment for the oversight schema (run through ``migrations.upgrade``)."""

from __future__ import annotations

from alembic import context

from services.oversight.migrations import VERSION_TABLE, include_object
from services.oversight.store import metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("oversight migrations run through services.oversight.migrations.upgrade()")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
