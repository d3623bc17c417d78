"""Alembic environment for the records schema (run through ``migrations.upgrade``)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from services.records import store  # noqa: F401 - registers the records tables
from services.records.migrations import VERSION_TABLE, include_object


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("records migrations run through services.records.migrations.upgrade()")
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        version_table=VERSION_TABLE,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
