"""The backup's key sealing and its libpq connection strings (pure logic; the e2e test runs the real thing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cli import backup_keys
from services.cli.backup_db import libpq

FILES = {"keyring.json": '{"active": "kek-1", "keks": {"kek-1": "c2VjcmV0"}}', "pseudonym.json": '{"key": "eA"}'}
PASS = "a long enough passphrase"


def test_sealed_keys_open_with_the_passphrase_and_hold_no_plaintext() -> None:
    blob = backup_keys.seal(FILES, PASS, "backup-1")
    assert b"c2VjcmV0" not in blob and b"kek-1" not in blob
    assert backup_keys.open_sealed(blob, PASS, "backup-1") == FILES


@pytest.mark.parametrize("passphrase, backup_id", [("a wrong passphrase!!", "backup-1"), (PASS, "backup-2")])
def test_a_wrong_passphrase_or_another_backups_file_does_not_open(passphrase: str, backup_id: str) -> None:
    blob = backup_keys.seal(FILES, PASS, "backup-1")
    with pytest.raises(backup_keys.KeysUnreadable):
        backup_keys.open_sealed(blob, passphrase, backup_id)


def test_an_altered_key_file_does_not_open() -> None:
    doc = json.loads(backup_keys.seal(FILES, PASS, "backup-1"))
    ct = bytearray(doc["ciphertext"].encode())
    ct[10] = ord("A") if ct[10] != ord("A") else ord("B")
    doc["ciphertext"] = ct.decode()
    with pytest.raises(backup_keys.KeysUnreadable):
        backup_keys.open_sealed(json.dumps(doc).encode(), PASS, "backup-1")
    with pytest.raises(backup_keys.KeysUnreadable):
        backup_keys.open_sealed(b"not json", PASS, "backup-1")


def test_a_short_passphrase_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        backup_keys.seal(FILES, "short", "backup-1")


def test_restored_key_files_stay_inside_the_keys_directory(tmp_path: Path) -> None:
    with pytest.raises(backup_keys.KeysUnreadable):
        backup_keys.write_key_files(tmp_path / "keys", {"../escape.json": "{}"})
    backup_keys.write_key_files(tmp_path / "keys", FILES)
    assert (tmp_path / "keys" / "keyring.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700


def test_a_url_naming_a_primary_and_its_replica_becomes_one_libpq_string() -> None:
    dsn, env = libpq("postgresql+psycopg://hg:s3cret@/healthgov?host=10.0.0.1:5432&host=10.0.0.2:5433"
                     "&target_session_attrs=read-write")
    assert dsn == ("host='10.0.0.1,10.0.0.2' port='5432,5433' user='hg' dbname='healthgov' "
                   "target_session_attrs='read-write'")
    assert "s3cret" not in dsn and env["PGPASSWORD"] == "s3cret"
