"""Alembic environment for the oversight schema (run through ``migrations.upgrade``)."""

from services.oversight.migrations import SCHEMA
from services.oversight.store import metadata

SCHEMA.run_environment(metadata)
