"""HL7 v2 over HTTP on the running platform: ACKs, stored resources, broken messages."""

from __future__ import annotations

import uuid

import httpx
from hl7apy.parser import parse_message

from services.ingest import hl7v2
from tests.conftest import auth
from tests.integration.ingest.support import wait_readable
from tests.unit.ingest.hl7_messages import adt, oru

HL7 = {"Content-Type": "x-application/hl7-v2+er7"}


def _send(settings, token, message: str) -> tuple[int, object]:
    r = httpx.post(f"{settings.ingest_url}/hl7v2", content=message.encode(), timeout=60,
                   headers=auth(token("gy-hosp-001", "ingest", role="integration"), **HL7))
    return r.status_code, parse_message(r.text, find_groups=False)


def test_adt_and_oru_are_acknowledged_and_stored(stack, token, settings) -> None:
    mrn = "MRN-" + uuid.uuid4().hex[:10]
    status, ack = _send(settings, token, adt("A01", control="C" + mrn, mrn=mrn))
    assert status == 200 and ack.msa.msa_1.value == "AA" and ack.msa.msa_2.value == "C" + mrn
    patient, encounter = hl7v2.to_fhir(adt("A01", control="C" + mrn, mrn=mrn), "gy-hosp-001").resources
    stored = wait_readable(settings, token, "Patient", patient["id"])
    assert stored["identifier"][0]["value"] == mrn and stored["birthDate"] == "1980-01-02"
    wait_readable(settings, token, "Encounter", encounter["id"])
    status, ack = _send(settings, token, oru(control="L" + mrn, mrn=mrn))
    assert status == 200 and ack.msa.msa_1.value == "AA"
    observations = hl7v2.to_fhir(oru(control="L" + mrn, mrn=mrn), "gy-hosp-001").resources[1:]
    got = wait_readable(settings, token, "Observation", observations[0]["id"])
    assert got["valueQuantity"]["value"] == 6.1 and got["subject"] == {"reference": f"Patient/{patient['id']}"}
    # A resent message (same control id) is acknowledged again and stored once.
    status, ack = _send(settings, token, oru(control="L" + mrn, mrn=mrn))
    assert status == 200 and ack.msa.msa_1.value == "AA"
    assert wait_readable(settings, token, "Observation", observations[0]["id"])["meta"]["versionId"] == "1"


def test_broken_messages_get_ae_or_ar_with_the_reason(stack, token, settings) -> None:
    cases = [
        (adt(mrn=""), "AE", "PID-3"),
        (adt(birth="02/01/1980"), "AE", "PID-7"),
        (adt().replace("ADT^A01^ADT_A01", "ADT^A03^ADT_A03"), "AR", "not supported"),
        ("MSH|^~\\&|this is not|a message", "AR", "MSH-10"),
        ("PID|1||MRN1", "AR", "must start with MSH"),
    ]
    for message, code, reason in cases:
        status, ack = _send(settings, token, message)
        assert status == 400, (reason, status)
        assert ack.msa.msa_1.value == code, (reason, ack.to_er7())
        assert reason in ack.to_er7(), (reason, ack.to_er7())
    denied = httpx.post(f"{settings.ingest_url}/hl7v2", content=adt().encode(), timeout=30,
                        headers=auth(token("gy-cdc", "ingest", role="integration"), **HL7))
    assert denied.status_code == 403
