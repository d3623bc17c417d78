"""PostgreSQL recovery on the real stack: backup and restore of the whole platform, then failover to a replica.

A backup of the running platform is restored into a fresh stack of its own (new state dir, ports, database).

The restored stack must pass ``healthgov audit verify``, serve the same log
(the same signed tree head) and answer the same reads; its key file must not
open with a wrong passphrase, and no key may appear in plaintext in the backup.
That restored stack then gets a synchronous streaming replica; its primary is
killed (-9), the replica promoted and the platform pointed at it: what was
acknowledged is still there and new writes work.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.adapters.config import REPO_ROOT, PlatformSettings
from tests.conftest import auth, wait_for

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
    # The platform names the primary and the replica it may get: whichever is writable is used, so a
    # promoted replica is found without reconfiguring or restarting anything.
    primary = int(env["HEALTHGOV_PG_PORT"])
    env["HEALTHGOV_DATABASE_URL"] = (f"postgresql+psycopg://postgres@/healthgov?host=127.0.0.1:{primary}"
                                     f"&host=127.0.0.1:{primary + 1}&target_session_attrs=read-write")
    assert started.stdout.strip().endswith(f":{primary}/healthgov"), started.stdout
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


@pytest.fixture(scope="module")
def restored(loaded, settings, fresh, tmp_path_factory, token) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Back up this stack, restore it into ``fresh`` (a wrong passphrase first) and start it there."""
    tmp = tmp_path_factory.mktemp("backup")
    patients = loaded["patient_ids"][:3]
    out: dict[str, Any] = {"patients": patients, "before": _everything(settings.records_url, token, patients),
                           "data": tmp / "backup", "sealed": tmp / "elsewhere" / "keys.sealed"}
    env = {**os.environ, "NO_COLOR": "1", "HEALTHGOV_BACKUP_PASSPHRASE": PASSPHRASE}
    started = time.monotonic()
    created = _run([HEALTHGOV, "backup", "create", str(out["data"]), "--keys", str(out["sealed"])], env)
    assert created.returncode == 0, created.stdout + created.stderr
    out["backup_s"] = time.monotonic() - started
    restore = [HEALTHGOV, "backup", "restore", str(out["data"]), "--keys", str(out["sealed"])]
    out["wrong"] = _run(restore, {**fresh, "HEALTHGOV_BACKUP_PASSPHRASE": "not the passphrase at all"})
    out["keys_after_wrong"] = list((Path(fresh["HEALTHGOV_STATE_DIR"]) / "keys").glob("*.json"))
    started = time.monotonic()
    restored = _run(restore, {**fresh, "HEALTHGOV_BACKUP_PASSPHRASE": PASSPHRASE})
    assert restored.returncode == 0, restored.stdout + restored.stderr
    out["restore_s"] = time.monotonic() - started
    out["again"] = _run(restore, {**fresh, "HEALTHGOV_BACKUP_PASSPHRASE": PASSPHRASE})
    started = time.monotonic()
    up = _run([HEALTHGOV, "stack", "up"], fresh, timeout=600)
    if up.returncode != 0:  # a second Kafka can take longer than `stack up` waits on a loaded 2-core machine
        print(f"\nstack up failed once, started again: {up.stderr[-300:]}")
        up = _run([HEALTHGOV, "stack", "up"], fresh, timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    out["up_s"] = time.monotonic() - started
    out["settings"] = PlatformSettings(port_offset=int(fresh["HEALTHGOV_PORT_OFFSET"]))
    print(f"\nbackup {out['backup_s']:.1f}s, restore {out['restore_s']:.1f}s, stack up {out['up_s']:.1f}s")
    return out


def test_a_backup_restored_into_a_fresh_stack_serves_the_same_records_and_log(
        restored, token, settings, fresh) -> None:  # type: ignore[no-untyped-def]
    data, sealed, other = restored["data"], restored["sealed"], restored["settings"]
    [db] = json.loads((data / "manifest.json").read_text())["databases"]
    head = db["audit"]
    assert head["entries"] > 0 and head["checkpoint"]["size"] == head["entries"], head

    # No key is written in plaintext, neither with the data nor in the sealed file.
    keys_dir = settings.state_dir / "keys"
    secrets = [v for f in keys_dir.glob("*.json") for k, v in json.loads(f.read_text()).items()
               if k in ("private", "key")]
    secrets += list(json.loads((keys_dir / "keyring.json").read_text())["keks"].values())
    assert len(secrets) > 5
    written = [p.read_bytes() for p in [*data.iterdir(), sealed]]
    for secret in secrets:
        raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
        assert not any(secret.encode() in blob or raw in blob for blob in written)

    # A wrong passphrase restores nothing; a second restore never goes over live state.
    assert restored["wrong"].returncode == 1 and "nothing restored" in restored["wrong"].stderr
    assert restored["keys_after_wrong"] == []
    assert restored["again"].returncode == 1 and "nothing restored" in restored["again"].stderr

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
    assert _everything(other.records_url, token, restored["patients"]) == restored["before"]


def _write_condition(other: PlatformSettings, token: Any, patient_id: str) -> tuple[str, str]:
    """An acknowledged Condition of ``patient_id``, readable; its id and its ingest AuditEvent's id."""
    cid = str(uuid.uuid4())
    condition = {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{patient_id}"},
                 "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}}
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": condition, "request": {"method": "PUT", "url": f"Condition/{cid}"}}]}
    r = httpx.post(f"{other.ingest_url}/fhir", json=bundle, timeout=60,
                   headers=auth(token("gy-hosp-001", "ingest", role="integration")))
    assert r.status_code == 200, r.text
    wait_for(lambda: _read(other, token, cid).status_code == 200, 60, f"Condition {cid} to be readable")
    return cid, r.headers["X-Healthgov-Event-Id"]


def _read(other: PlatformSettings, token: Any, cid: str) -> httpx.Response:
    return httpx.get(f"{other.records_url}/fhir/Condition/{cid}", timeout=30,
                     headers=auth(token("gy-hosp-001", purpose="TREAT")))


def _in_log(other: PlatformSettings, event_id: str) -> bool:
    size = httpx.get(f"{other.audit_url}/healthz", timeout=10).json()["size"]
    return httpx.get(f"{other.audit_url}/proofs/inclusion", params={"event_id": event_id, "size": size},
                     timeout=10).status_code == 200


def test_failover_to_the_synchronous_replica_keeps_what_was_acknowledged(restored, token, fresh) -> None:  # type: ignore[no-untyped-def]
    other: PlatformSettings = restored["settings"]
    postgres = str(REPO_ROOT / "deploy" / "postgres.sh")
    replica_env = {**fresh, "HEALTHGOV_PG_PORT": str(int(fresh["HEALTHGOV_PG_PORT"]) + 1)}
    made = _run([postgres, "replica"], fresh)
    assert made.returncode == 0, made.stderr
    try:
        patient = restored["patients"][0]
        acknowledged = [_write_condition(other, token, patient) for _ in range(3)]
        primary = Path((REPO_ROOT / ".cache" / f"pg-dir-{fresh['HEALTHGOV_PG_PORT']}").read_text().strip())
        postmaster = int((primary / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        killed = time.monotonic()
        # The outage: a read is a 503 the client may retry, never a 500.
        down = _read(other, token, acknowledged[0][0])
        assert down.status_code == 503 and int(down.headers["Retry-After"]) > 0, down.text

        promoted = _run([postgres, "promote"], replica_env)
        assert promoted.returncode == 0, promoted.stderr
        wait_for(lambda: _read(other, token, acknowledged[0][0]).status_code == 200, 60,
                 "the platform to read from the promoted replica")
        print(f"\nfailed over: reads answered again {time.monotonic() - killed:.1f}s after kill -9 of the primary")

        assert all(_read(other, token, cid).status_code == 200 for cid, _ in acknowledged)
        wait_for(lambda: all(_in_log(other, event) for _, event in acknowledged), 60,
                 "the acknowledged writes' audit events in the log")
        _, event = _write_condition(other, token, patient)  # new writes work, and are audited
        wait_for(lambda: _in_log(other, event), 60, "the new write's audit event in the log")
        print(f"a new write readable and audited {time.monotonic() - killed:.1f}s after the kill")
        verified = _run([HEALTHGOV, "audit", "verify"], fresh)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        _run([postgres, "stop"], replica_env)
