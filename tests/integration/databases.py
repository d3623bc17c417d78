"""Scratch PostgreSQL databases for integration tests that must not touch the platform's own.

The test stack's PostgreSQL is reached with ``HEALTHGOV_DATABASE_URL`` (the
owner's connection; ``make test`` sets it, and without it the tests fail,
never skip). Each scratch database is created empty and dropped afterwards,
with anything else the test names (e.g. a role it made).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.adapters.config import PlatformSettings


def owner_url_of(settings: PlatformSettings) -> str:
    url = settings.database_url
    assert url and url.startswith("postgresql"), (
        "HEALTHGOV_DATABASE_URL must name the test PostgreSQL (deploy/postgres.sh start prints it)")
    return url


@contextmanager
def scratch_database(owner_url: str, prefix: str, drop_roles: tuple[str, ...] = ()) -> Iterator[str]:
    """A fresh, empty database; yields its URL (as the owner) and drops it, and ``drop_roles``, after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(owner_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(owner_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            for role in drop_roles:
                conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()
