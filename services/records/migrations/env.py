"""Alembic environment for the records schema (run through ``migrations.upgrade``)."""

from sqlmodel import SQLModel

from services.records import store  # noqa: F401 - registers the records tables
from services.records.migrations import SCHEMA

SCHEMA.run_environment(SQLModel.metadata)
