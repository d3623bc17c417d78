"""Alembic migrations of the records schema, for SQLite and PostgreSQL (run by ``adapters.migrations``).

The records service shares its database with other services, so its revision
lives in its own version table (``records_alembic_version``) and only tables
named ``records_*`` are ever compared or touched.

A database made before migrations existed (the walking skeleton's
``create_all``) is adopted: it is stamped at the baseline revision, then
upgraded like any other.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from services.adapters.migrations import Schema

BASELINE = "0001"
_VERSION_TABLE = "records_alembic_version"


def _tables() -> frozenset[str]:
    from services.records.store import RECORDS_TABLE_NAMES

    return frozenset(RECORDS_TABLE_NAMES)


def _adopt(conn: Connection, cfg: Config) -> None:
    tables = set(inspect(conn).get_table_names())
    if _VERSION_TABLE not in tables and "records_resource" in tables:
        command.stamp(cfg, BASELINE)


SCHEMA = Schema(Path(__file__).resolve().parent, _VERSION_TABLE, 0x68676F7672656373, _tables, _adopt)  # "hgovrecs"
VERSION_TABLE = SCHEMA.version_table
include_object, config, head, current = SCHEMA.include_object, SCHEMA.config, SCHEMA.head, SCHEMA.current
upgrade, downgrade = SCHEMA.upgrade, SCHEMA.downgrade
