"""Crypto-shredding and KEK rotation on the running platform.

Erasure: only the patient may erase; afterwards the data key is gone, reads
answer 410 Gone (to callers who could otherwise read), and an ``erasure``
event is on the log. Rotation: ``healthgov keys rotate`` rewraps every data
key under a new KEK and destroys the old one, while the running records
service keeps serving the same records.
"""

from __future__ import annotations

import httpx
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from services.adapters.keys import PlatformKeys
from services.cli.main import app
from services.records.store import PatientKey, Record, make_engine
from services.records.vault import Shredded, Vault
from tests.conftest import first_patient, wait_for
from tests.integration.records.support import (
    DEPRESSION,
    MRN_SYSTEM,
    all_logged_events,
    bearer,
    condition,
    fresh_patient,
    ingest,
    logged_event,
    permit,
)


def test_erasure_shreds_the_key_and_reads_are_gone(stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    p = fresh_patient(first_patient())
    pid, cond = p["id"], condition(p["id"], DEPRESSION, "2021-01-01")
    ingest(settings, token, p, cond)
    mrn = next(i["value"] for i in p["identifier"] if i["system"] == MRN_SYSTEM)
    me = lambda: bearer(token("healthgov-portal", role="patient", patient=pid, purpose="PATRQT"))  # noqa: E731
    doctor = lambda: bearer(token("gy-hosp-001", purpose="TREAT"))  # noqa: E731
    with httpx.Client(base_url=settings.records_url, timeout=60) as c:
        assert c.post("/fhir/Consent", json=permit(pid, "gz-insurer-1", "HPAYMT"), headers=me()).status_code == 201
        assert c.get(f"/fhir/Patient/{pid}/$everything", headers=me()).json()["total"] == 2

        refused = c.delete(f"/fhir/Patient/{pid}", headers=doctor())
        assert refused.status_code == 403 and "erase_only_by_patient" in refused.text
        assert c.get(f"/fhir/Condition/{cond['id']}", headers=doctor()).status_code == 200

        erased = c.delete(f"/fhir/Patient/{pid}", headers=me())
        assert erased.status_code == 200, erased.text
        for path, params, who in ((f"/fhir/Patient/{pid}/$everything", {}, me),
                                  (f"/fhir/Condition/{cond['id']}", {}, doctor),
                                  (f"/fhir/Condition/{cond['id']}/_history", {}, doctor),
                                  ("/fhir/Condition", {"patient": pid}, doctor),
                                  ("/fhir/Consent", {"patient": pid}, me)):
            r = c.get(path, params=params, headers=who())
            assert r.status_code == 410, (path, r.status_code, r.text[:200])
            assert cond["id"] not in r.text and "entry" not in r.json()
        # The erasure is news only to whoever could have read the records.
        stranger = c.get(f"/fhir/Condition/{cond['id']}", headers=bearer(token("gz-insurer-1", purpose="HPAYMT")))
        assert stranger.status_code == 403
        # The identifier index went with the key: an MRN no longer finds anybody.
        # The identifier index went with the key: the MRN names nobody now, refused as for a stranger.
        assert c.get("/fhir/Patient", params={"identifier": f"{MRN_SYSTEM}|{mrn}"}, headers=doctor()).status_code == 403
        assert c.delete(f"/fhir/Patient/{pid}", headers=me()).status_code == 410
        assert c.post("/fhir/Consent", json=permit(pid, "gz-insurer-1", "HPAYMT"), headers=me()).status_code == 410

    event = logged_event(settings, token, erased.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "erasure" and event["details"]["method"] == "crypto-shredding"
    assert event["details"]["record_versions"] == 2 and event["details"]["consent_versions"] == 1

    # Even with every key the platform holds, the rows left behind are noise.
    keys = PlatformKeys(settings.state_dir)
    vault = Vault(keys.keyring(), keys.blind_index_key(), keys.pseudonym_key())
    engine = make_engine(settings.database_url or "", migrate=False)
    with Session(engine) as s:
        key = s.get(PatientKey, vault.pseudonym(pid))
        assert key is not None and key.wrapped is None
        rows = s.exec(select(Record).where(Record.patient == vault.pseudonym(pid))).all()
        assert len(rows) == 2
        for row in rows:
            with pytest.raises(Shredded):
                vault.open_row(s, row)
    engine.dispose()


def test_key_rotation_keeps_records_readable_and_destroys_the_old_kek(loaded, token, settings) -> None:  # type: ignore[no-untyped-def]
    keyring = PlatformKeys(settings.state_dir).keyring()
    old, _ = keyring.active()
    pid = loaded["patient_ids"][4]
    path = f"/fhir/Patient/{pid}/$everything"
    before = httpx.get(f"{settings.records_url}{path}", headers=bearer(token("gy-hosp-001", purpose="TREAT")),
                       timeout=60)
    assert before.status_code == 200

    result = CliRunner().invoke(app, ["keys", "rotate", "--operator", "key-custodian-7"])
    assert result.exit_code == 0, result.output
    new, _ = keyring.active()
    assert new != old and keyring.kids() == [new]  # the old KEK is destroyed, not just unused

    engine = make_engine(settings.database_url or "", migrate=False)
    with Session(engine) as s:
        live = s.exec(select(PatientKey.kek_id).where(PatientKey.wrapped.is_not(None))).all()  # type: ignore[union-attr]
    engine.dispose()
    assert live and set(live) == {new}

    after = httpx.get(f"{settings.records_url}{path}", headers=bearer(token("gy-hosp-001", purpose="TREAT")),
                      timeout=60)
    assert after.status_code == 200
    assert [e["resource"]["id"] for e in after.json()["entry"]] == [e["resource"]["id"] for e in before.json()["entry"]]

    def audited() -> bool:
        return any(e["kind"] == "key_rotation" and e["details"]["new_kek"] == new and e["details"]["retired"] == [old]
                   and e["accessor"]["id"] == "key-custodian-7" for e in all_logged_events(settings, token))

    wait_for(audited, 60, "the key_rotation event in the audit log")
    status = CliRunner().invoke(app, ["keys", "status"])
    assert status.exit_code == 0 and f"active {new}" in status.output
