"""HL7 v2 over HTTP on the running platform: ACKs, stored resources, broken messages."""

from __future__ import annotations

import uuid

import httpx
from hl7apy.parser import parse_message

from services.ingest import hl7v2
from tests.conftest import auth
from tests.integration.ingest.support import assert_never_stored, wait_readable
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
    tag = uuid.uuid4().hex[:10]
    mrns = [f"MRN-{tag}-{n}" for n in range(3)]
    cases = [  # (message, ACK code, reason, MRN of the patient it names, if it can be mapped at all)
        (adt(mrn="", control=f"E{tag}"), "AE", "PID-3", None),
        (adt(birth="02/01/1980", control=f"B{tag}", mrn=mrns[0]), "AE", "PID-7", mrns[0]),
        (adt(control=f"T{tag}", mrn=mrns[1]).replace("ADT^A01^ADT_A01", "ADT^A03^ADT_A03"), "AR", "not supported",
         mrns[1]),
        ("MSH|^~\\&|this is not|a message", "AR", "MSH-10", None),
        ("PID|1||MRN1", "AR", "must start with MSH", None),
    ]
    for message, code, reason, _mrn in cases:
        status, ack = _send(settings, token, message)
        assert status == 400, (reason, status)
        assert ack.msa.msa_1.value == code, (reason, ack.to_er7())
        assert reason in ack.to_er7(), (reason, ack.to_er7())
    denied = httpx.post(f"{settings.ingest_url}/hl7v2", content=adt(control=f"D{tag}", mrn=mrns[2]).encode(),
                        timeout=30, headers=auth(token("gy-cdc", "ingest", role="integration"), **HL7))
    assert denied.status_code == 403
    # Nothing of a refused message was stored: the Patient and Encounter a good version of it would give.
    for mrn in [m for *_, m in cases if m] + [mrns[2]]:
        resources = hl7v2.to_fhir(adt("A01", mrn=mrn), "gy-hosp-001").resources
        assert [r["resourceType"] for r in resources] == ["Patient", "Encounter"]
        assert_never_stored(settings, token, resources[0]["id"], [(r["resourceType"], r["id"]) for r in resources])


def test_an_hl7_v2_3_admission_is_accepted_and_its_patient_readable(stack, token, settings) -> None:
    mrn = "MRN-" + uuid.uuid4().hex[:10]
    message = adt("A01", control="V" + mrn, mrn=mrn, version="2.3")
    assert message.split("\r")[0].split("|")[11] == "2.3"  # MSH-12
    status, ack = _send(settings, token, message)
    assert status == 200 and ack.msa.msa_1.value == "AA", ack.to_er7()
    assert ack.msa.msa_2.value == "V" + mrn and ack.msh.msh_12.to_er7() == "2.3"  # answered in its own version
    patient, encounter = hl7v2.to_fhir(message, "gy-hosp-001").resources
    stored = wait_readable(settings, token, "Patient", patient["id"])
    assert stored["identifier"][0]["value"] == mrn and stored["birthDate"] == "1980-01-02"
    assert stored["name"][0]["family"] == "Wang"
    assert wait_readable(settings, token, "Encounter", encounter["id"])["subject"] == {
        "reference": f"Patient/{patient['id']}"}
