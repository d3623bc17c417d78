"""A database that cannot be reached is a 503 with Retry-After, and a dropped connection costs one request.

The services' engines do not ping a connection before each use (that would be a
round trip on every read). These tests show what that costs: a database that is
down answers 503 rather than 500, and after a connection is killed under the
pool, one request fails with 503 and the next is served.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from services.adapters.sql import engine_for
from services.adapters.web import install_error_handlers
from tests.integration.databases import scratch_database


def app_over(engine: Engine) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/answer")
    def answer() -> dict[str, int]:
        with engine.connect() as conn:
            return {"answer": conn.execute(text("SELECT 41 + :one"), {"one": 1}).scalar_one()}

    return app


@pytest.fixture
def scratch(owner_url: str) -> Iterator[str]:
    with scratch_database(owner_url, "hg_dbdown") as url:
        yield url


def test_a_database_that_is_down_is_a_503_with_retry_after() -> None:
    engine = engine_for("postgresql+psycopg://healthgov@127.0.0.1:9/nothing_listens", pool_size=2)
    r = TestClient(app_over(engine)).get("/answer")
    assert r.status_code == 503
    assert int(r.headers["Retry-After"]) > 0
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "transient"
    assert "SELECT" not in r.text  # the statement and its parameters stay inside


def test_a_killed_connection_fails_one_request_then_the_pool_recovers(scratch: str, owner_url: str) -> None:
    engine = engine_for(scratch, pool_size=2, application_name="hg-dbdown-test")
    client = TestClient(app_over(engine))
    assert client.get("/answer").json() == {"answer": 42}  # a pooled connection now exists
    admin = create_engine(owner_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        killed = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE application_name = 'hg-dbdown-test'")).scalar_one()
    admin.dispose()
    assert killed >= 1
    assert client.get("/answer").status_code == 503  # the request that found the dead connection
    assert client.get("/answer").json() == {"answer": 42}  # the pool threw the dead connection away
    engine.dispose()
