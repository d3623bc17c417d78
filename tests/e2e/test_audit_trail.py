"""The audit trail of the walking skeleton: reads are logged, checkpoints verify."""

from __future__ import annotations

import httpx
from typer.testing import CliRunner

from services.audit import merkle, note
from services.cli.main import app
from tests.conftest import auth, wait_for


def test_every_read_is_in_the_signed_log_and_verify_passes(loaded, token, settings) -> None:
    pid = loaded["patient_ids"][2]
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{pid}/$everything",
                  headers=auth(token("gy-hosp-001", purpose="TREAT")), timeout=30)
    assert r.status_code == 200
    event_id = r.headers["X-Healthgov-Event-Id"]
    audit = settings.audit_url

    def receipt_ready() -> bool:
        return httpx.get(f"{audit}/receipts/{event_id}", timeout=10).status_code == 200

    wait_for(receipt_ready, 60, "a checkpoint covering the read")
    receipt = httpx.get(f"{audit}/receipts/{event_id}", timeout=10).json()
    vkey = httpx.get(f"{audit}/verifier-key", timeout=10).text.strip()
    cp = note.open_checkpoint(receipt["checkpoint"], note.new_verifier(vkey))
    import base64

    entry = base64.b64decode(receipt["entry"])
    proof = [base64.b64decode(h) for h in receipt["proof"]]
    merkle.verify_inclusion(merkle.leaf_hash(entry), receipt["index"], cp.size, proof, cp.root_hash)
    assert event_id.encode() in entry and b"disclosure" in entry

    result = CliRunner().invoke(app, ["audit", "verify", "--url", audit])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
