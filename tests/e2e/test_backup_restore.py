"""Back up the running platform and restore it into a fresh stack of its own (new state dir, ports, database).

The restored stack must pass ``healthgov audit verify``, serve the same log
(the same signed tree head) and answer the same reads; its key file must not
open with a wrong passphrase, and no key may appear in plaintext in the backup.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.adapters.config import REPO_ROOT, PlatformSettings
from tests.conftest import auth

HEALTHGOV = str(Path(sys.executable).parent / "healthgov")
SHIFT = 50  # the restored stack's ports: this stack's offset + 50, inside this offset's block of 100
PASSPHRASE = "restore drill passphrase"
PG_BASE = 55432


def _run(argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def fresh(settings: PlatformSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of a second, empty stack with a PostgreSQL server of its own; stopped afterwards."""
    offset = settings.port_offset + SHIFT
    env = {**os.environ, "NO_COLOR": "1", "HEALTHGOV_ENV": "test",
           "HEALTHGOV_STATE_DIR": str(tmp_path_factory.mktemp("restored-state")),
           "HEALTHGOV_PORT_OFFSET": str(offset), "HEALTHGOV_PG_PORT": str(PG_BASE + offset)}
    started = _run([str(REPO_ROOT / "deploy" / "postgres.sh"), "start"], env)
    assert started.returncode == 0, started.stderr
    env["HEALTHGOV_DATABASE_URL"] = started.stdout.strip().splitlines()[-1]
    try:
        yield env
    finally:
        _run([HEALTHGOV, "stack", "down"], env)
        _run([str(REPO_ROOT / "deploy" / "postgres.sh"), "stop"], env)


def _everything(records_url: str, token: Any, patient_ids: list[str]) -> dict[str, list[Any]]:
    """What a clinician reads of each patient: the resources of ``$everything``, in a stable order."""
    out: dict[str, list[Any]] = {}
    with httpx.Client(base_url=records_url, timeout=60) as c:
        for pid in patient_ids:
            r = c.get(f"/fhir/Patient/{pid}/$everything", headers=auth(token("gy-hosp-001", purpose="TREAT")))
            assert r.status_code == 200, r.text
            out[pid] = sorted((e["resource"] for e in r.json()["entry"]),
                              key=lambda res: (res["resourceType"], res["id"]))
    return out


def test_a_backup_restored_into_a_fresh_stack_serves_the_same_records_and_log(
        loaded, stack, token, settings, keys, fresh, tmp_path) -> None:  # type: ignore[no-untyped-def]
    patients = loaded["patient_ids"][:3]
    before = _everything(settings.records_url, token, patients)
    data, sealed = tmp_path / "backup", tmp_path / "elsewhere" / "keys.sealed"
    env = {**os.environ, "NO_COLOR": "1", "HEALTHGOV_BACKUP_PASSPHRASE": PASSPHRASE}

    created = _run([HEALTHGOV, "backup", "create", str(data), "--keys", str(sealed)], env)
    assert created.returncode == 0, created.stdout + created.stderr
    manifest = json.loads((data / "manifest.json").read_text())
    [db] = manifest["databases"]
    head = db["audit"]
    assert head["entries"] > 0 and head["checkpoint"]["size"] == head["entries"], head

    # No key is written in plaintext, neither with the data nor in the sealed file.
    secrets = [v for f in (settings.state_dir / "keys").glob("*.json") for k, v in json.loads(f.read_text()).items()
               if k in ("private", "key")]
    secrets += [v for kek in json.loads((settings.state_dir / "keys" / "keyring.json").read_text())["keks"].values()
                for v in [kek]]
    assert len(secrets) > 5
    written = [p.read_bytes() for p in [*data.iterdir(), sealed]]
    for secret in secrets:
        raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
        assert not any(secret.encode() in blob or raw in blob for blob in written)

    # A wrong passphrase restores nothing.
    wrong = _run([HEALTHGOV, "backup", "restore", str(data), "--keys", str(sealed)],
                 {**fresh, "HEALTHGOV_BACKUP_PASSPHRASE": "not the passphrase at all"})
    assert wrong.returncode == 1 and "nothing restored" in wrong.stderr, wrong.stderr
    assert not list((Path(fresh["HEALTHGOV_STATE_DIR"]) / "keys").glob("*.json"))

    restore = [HEALTHGOV, "backup", "restore", str(data), "--keys", str(sealed)]
    restored = _run(restore, {**fresh, "HEALTHGOV_BACKUP_PASSPHRASE": PASSPHRASE})
    assert restored.returncode == 0, restored.stdout + restored.stderr
    again = _run(restore, {**fresh, "HEALTHGOV_BACKUP_PASSPHRASE": PASSPHRASE})
    assert again.returncode == 1 and "nothing restored" in again.stderr, again.stderr  # never over live state

    up = _run([HEALTHGOV, "stack", "up"], fresh, timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    other = PlatformSettings(port_offset=int(fresh["HEALTHGOV_PORT_OFFSET"]))

    # The same log: the restored service publishes the backed-up signed tree head, and it verifies.
    cps = httpx.get(f"{other.audit_url}/checkpoints", timeout=30).json()
    newest = max(cps, key=lambda c: c["size"])
    assert newest["size"] == head["entries"]
    assert base64.b64decode(newest["root"]).hex() == head["checkpoint"]["root"]
    assert newest["note"].startswith(head["checkpoint"]["note"])
    original = {c["size"]: c["root"] for c in httpx.get(f"{settings.audit_url}/checkpoints", timeout=30).json()}
    assert original[newest["size"]] == newest["root"]
    verified = _run([HEALTHGOV, "audit", "verify"], fresh)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # The same records, opened with the restored keys.
    assert _everything(other.records_url, token, patients) == before
