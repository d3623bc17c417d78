"""Fixtures for the records integration tests: fresh databases, fresh keys, a vault.

Every store test runs on SQLite and on a scratch database of the test stack's
PostgreSQL (``tests/integration/databases.py``). Each test gets its own empty database and its own key
directory, so nothing here touches the running platform's records.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from services.adapters.keys import PlatformKeys
from services.records.store import make_engine
from services.records.vault import Vault
from tests.integration.databases import scratch_database
from tests.integration.records.support import OPEN_PRODUCERS


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
    with scratch_database(owner_url, "hg_records_t") as url:
        yield Db("postgresql", url)


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


@pytest.fixture(autouse=True)
def _close_producers() -> Iterator[None]:
    """Close the producers this test's use cases made (see ``support.OPEN_PRODUCERS``)."""
    yield
    while OPEN_PRODUCERS:
        OPEN_PRODUCERS.pop().close()
