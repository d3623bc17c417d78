"""Alembic migrations of the oversight schema, for SQLite and PostgreSQL (run by ``adapters.migrations``).

The oversight service shares its database with other services, so its revision
lives in its own version table (``oversight_alembic_version``) and only tables
named ``oversight_*`` are ever compared or touched.
"""

from __future__ import annotations

from pathlib import Path

from services.adapters.migrations import Schema


def _tables() -> frozenset[str]:
    from services.oversight.store import TABLE_NAMES

    return frozenset(TABLE_NAMES)


SCHEMA = Schema(Path(__file__).resolve().parent, "oversight_alembic_version", 0x68676F766F767273, _tables)  # "hgovovrs"
VERSION_TABLE = SCHEMA.version_table
include_object, config, head, current = SCHEMA.include_object, SCHEMA.config, SCHEMA.head, SCHEMA.current
upgrade, downgrade = SCHEMA.upgrade, SCHEMA.downgrade
