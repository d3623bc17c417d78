"""One Alembic runner for every service that owns a schema in a shared database.

Each service keeps its revisions in its own ``migrations`` folder and its own version table, and compares
or touches only its own tables; ``upgrade`` is what every process of the service runs before first use. On
PostgreSQL an advisory lock (one id per schema) makes concurrent starts wait for one another instead of racing.
The services' ``migrations`` packages bind one ``Schema`` each and re-export its methods.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection, Engine


@dataclass(frozen=True)
class Schema:
    """A service's schema: where its revisions live, its version table, its lock id and its tables."""

    directory: Path
    version_table: str
    lock_id: int  # any 64-bit number unique to this schema
    table_names: Callable[[], Collection[str]]  # late: the store imports the migrations, not the reverse
    adopt: Callable[[Connection, Config], None] | None = None  # a database made before migrations existed

    def include_object(self, obj: Any, name: str, type_: str, reflected: bool, compare_to: Any) -> bool:
        """Only this schema's tables are compared or touched: other services' tables share the database."""
        table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        return table is None or table in self.table_names()

    def config(self, connection: Connection | None = None) -> Config:
        """An Alembic config that needs no ini file (the CLI and tests use it too)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(self.directory))
        cfg.attributes["connection"] = connection
        return cfg

    def head(self) -> str:
        """The newest revision in the directory."""
        rev = ScriptDirectory.from_config(self.config()).get_current_head()
        assert rev is not None
        return rev

    def current(self, engine: Engine) -> str | None:
        """The revision the database is at, or None when it was never migrated."""
        with engine.connect() as conn:
            return MigrationContext.configure(conn, opts={"version_table": self.version_table}).get_current_revision()

    def upgrade(self, engine: Engine, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (idempotent, safe to race)."""
        with engine.begin() as conn:
            self._lock(conn)
            cfg = self.config(conn)
            if self.adopt is not None:
                self.adopt(conn, cfg)
            command.upgrade(cfg, revision)

    def downgrade(self, engine: Engine, revision: str) -> None:
        """Take the schema back to ``revision`` (``base`` drops every table of the schema)."""
        with engine.begin() as conn:
            self._lock(conn)
            command.downgrade(self.config(conn), revision)

    def run_environment(self, target_metadata: MetaData) -> None:
        """The body of the schema's ``env.py``: run the migrations Alembic was asked for, on our connection.

        Only ``upgrade``/``downgrade`` (or a caller giving ``config(connection)``) may run them: they need the
        connection that holds the schema's lock, never a URL from an ini file.
        """
        from alembic import context

        connection = context.config.attributes.get("connection")
        if connection is None:
            raise RuntimeError(f"the migrations in {self.directory} run through their package's upgrade()")
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=self.version_table,
            include_object=self.include_object,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    def _lock(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": self.lock_id})
