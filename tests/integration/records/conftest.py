"""Fixtures for the records integration tests: fresh databases, fresh keys, a vault.

Every store test runs on SQLite and on the real PostgreSQL of the test stack
(``HEALTHGOV_DATABASE_URL``; ``make test`` sets it, and without it the tests
fail, never skip). Each test gets its own empty database and its own key
directory, so nothing here touches the running platform's records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from services.adapters.config import PlatformSettings
from services.adapters.keys import PlatformKeys
from services.records.store import make_engine
from services.records.vault import Vault


@pytest.fixture(scope="session")
def owner_url(settings: PlatformSettings) -> str:
    url = settings.database_url
    assert url and url.startswith("postgresql"), (
        "HEALTHGOV_DATABASE_URL must name the test PostgreSQL (deploy/postgres.sh start prints it)")
    return url


@dataclass
class Db:
    kind: str
    url: str  # a fresh, empty database

    def engine(self, migrate: bool = True) -> Engine:
        return make_engine(self.url, migrate=migrate)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path, owner_url: str) -> Iterator[Db]:
    if request.param == "sqlite":
        yield Db("sqlite", f"sqlite:///{tmp_path / 'records.db'}")
        return
    name = f"hg_records_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(owner_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield Db("postgresql", make_url(owner_url).set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def engine(db: Db) -> Iterator[Engine]:
    eng = db.engine()
    yield eng
    eng.dispose()


@pytest.fixture
def private_keys(tmp_path: Path) -> PlatformKeys:
    return PlatformKeys(tmp_path / "state")


@pytest.fixture
def vault(private_keys: PlatformKeys) -> Vault:
    return Vault(private_keys.keyring(), private_keys.blind_index_key(), private_keys.pseudonym_key())
