"""`healthgov audit witness` as its own process, with its own key, against the real audit service."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from services.cli.main import app
from services.tlog import note
from tests.integration.audit.conftest import Db, Server, audit_settings, fresh_db, serve
from tests.unit.audit.factory import entry


def _witness(url: str, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli.main", "audit", "witness", "--once", "--url", url,
                           "--state-file", str(state), *extra], capture_output=True, text=True, timeout=120)


def _grow(server: Server, n: int) -> None:
    server.svc.log.append([entry() for _ in range(n)])
    server.svc.checkpointer.checkpoint()


@pytest.fixture
def forked(tmp_path, owner_url: str) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    """A second log under the same signing key with another history: a split view."""
    gen = fresh_db("postgresql", tmp_path, owner_url)
    db: Db = next(gen)
    try:
        yield from serve(audit_settings(db), db)
    finally:
        gen.close()


def test_the_witness_cosigns_and_the_log_publishes_it(pg_server: Server, tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    _grow(pg_server, 10)
    first = _witness(pg_server.url, state)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "cosigned checkpoint at size 10" in first.stdout
    published = httpx.get(pg_server.url + "/checkpoint").text
    (wkey,) = httpx.get(pg_server.url + "/witnesses").json()
    assert note.verify_cosignature(published, wkey) > 0
    assert note.open_checkpoint(published, httpx.get(pg_server.url + "/verifier-key").text.strip()).size == 10
    _grow(pg_server, 5)
    assert "cosigned checkpoint at size 15" in _witness(pg_server.url, state).stdout
    assert httpx.get(pg_server.url + "/checkpoint", params={"witnessed": True}).text.count("\u2014 ") == 2
    result = CliRunner().invoke(app, ["audit", "verify", "--url", pg_server.url, "--witness-key", wkey])
    assert result.exit_code == 0 and "cosigned (healthgov.example/witness: 2)" in result.output, result.output


def test_a_split_view_raises_the_alarm_and_the_witness_stops(pg_server: Server, forked: Server,
                                                             tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    _grow(pg_server, 12)
    assert _witness(pg_server.url, state).returncode == 0
    _grow(forked, 20)  # same log key, different first 12 entries
    alarm = _witness(forked.url, state)
    assert alarm.returncode == 3, alarm.stdout + alarm.stderr
    assert "ALARM" in alarm.stdout and "does not extend the cosigned size 12" in alarm.stdout
    assert httpx.get(forked.url + "/checkpoint").text.count("\u2014 ") == 1  # nothing cosigned there
    _grow(pg_server, 3)
    assert _witness(pg_server.url, state).returncode == 3  # and it trusts this log no more


def test_a_witness_the_log_does_not_trust_is_refused(pg_server: Server, tmp_path: Path) -> None:
    _grow(pg_server, 4)
    stranger = _witness(pg_server.url, tmp_path / "w.json", "--key-file", str(tmp_path / "stranger.key"),
                        "--name", "stranger.example/witness")
    assert stranger.returncode == 1 and "400" in stranger.stdout, stranger.stdout + stranger.stderr
    assert (tmp_path / "stranger.key").read_text().startswith("PRIVATE+KEY+stranger.example/witness+")
    assert httpx.get(pg_server.url + "/checkpoint").text.count("\u2014 ") == 1
