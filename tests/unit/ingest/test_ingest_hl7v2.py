"""HL7 v2 mapping (ADT^A01/A04/A08, ORU^R01 -> Patient, Encounter, Observation) and ACKs."""

from __future__ import annotations

import pytest
from hl7apy.parser import parse_message

from services.fhir.validation import validate_resource
from services.ingest import hl7v2
from services.ingest.labels import load_table
from tests.unit.ingest.hl7_messages import adt, oru


@pytest.mark.parametrize("trigger", ["A01", "A04", "A08"])
def test_adt_becomes_a_valid_patient_and_encounter(trigger: str) -> None:
    mapped = hl7v2.to_fhir(adt(trigger), "gy-hosp-001")
    assert (mapped.message_type, mapped.trigger, mapped.control_id) == ("ADT", trigger, "MSG00001")
    patient, encounter = mapped.resources
    assert patient["resourceType"] == "Patient" and encounter["resourceType"] == "Encounter"
    assert patient["identifier"][0]["value"] == "MRN12345"
    assert patient["name"] == [{"family": "Wang", "given": ["Li", "Mei"]}]
    assert (patient["birthDate"], patient["gender"]) == ("1980-01-02", "female")
    assert patient["address"][0]["city"] == "Guiyang"
    assert encounter["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert encounter["class"]["code"] == "IMP"
    assert encounter["identifier"][0]["value"] == "V778899"
    assert encounter["period"] == {"start": "2026-11-22T08:00:00+08:00"}
    for res in mapped.resources:
        assert validate_resource(res, res["resourceType"]) == []


def test_ids_are_stable_per_hospital_so_a_resend_updates() -> None:
    one = hl7v2.to_fhir(adt("A01"), "gy-hosp-001").resources
    two = hl7v2.to_fhir(adt("A08", control="MSG00002"), "gy-hosp-001").resources
    other = hl7v2.to_fhir(adt("A01"), "gy-hosp-002").resources
    assert [r["id"] for r in one] == [r["id"] for r in two]
    assert one[0]["id"] != other[0]["id"]


def test_oru_becomes_observations_with_values_and_labels() -> None:
    mapped = hl7v2.to_fhir(oru(), "gy-hosp-001")
    patient, *observations = mapped.resources
    assert [o["code"]["coding"][0]["code"] for o in observations] == ["4548-4", "75622-1", "8251-1"]
    hba1c, hiv, comment = observations
    assert hba1c["valueQuantity"] == {"value": 6.1, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    assert hba1c["code"]["coding"][0]["system"] == "http://loinc.org"
    assert hba1c["interpretation"][0]["coding"][0]["code"] == "H"
    assert hba1c["effectiveDateTime"] == "2026-11-22T09:00:00+08:00"
    assert hiv["valueCodeableConcept"]["coding"][0] == {"code": "260385009", "system": "http://snomed.info/sct",
                                                        "display": "Negative"}
    assert comment["valueString"] == "Fasting sample"
    assert all(o["subject"] == {"reference": f"Patient/{patient['id']}"} for o in observations)
    assert all(validate_resource(r, r["resourceType"]) == [] for r in mapped.resources)
    assert load_table().labels_for(hiv) == ["HIV"]


@pytest.mark.parametrize(("message", "code", "where"), [
    ("garbage", "AR", "MSH"),
    (adt().replace("ADT^A01^ADT_A01", "ADT^A02^ADT_A02"), "AR", "MSH-9"),
    (adt(version="2.7"), "AR", "MSH-12"),
    (adt(mrn=""), "AE", "PID-3"),
    (adt(birth="1980-01-02"), "AE", "PID-7"),
    (adt().replace("|MSG00001|", "||"), "AR", "MSH-10"),
    (oru(value="high"), "AE", "OBX[1]-5"),
    ("\r".join(oru().split("\r")[:3]), "AE", "OBX"),
])
def test_broken_messages_say_what_and_where(message: str, code: str, where: str) -> None:
    with pytest.raises(hl7v2.Hl7Error) as err:
        hl7v2.to_fhir(message, "gy-hosp-001")
    assert (err.value.ack, err.value.where) == (code, where)


def test_ack_parses_and_echoes_the_control_id() -> None:
    ok = hl7v2.ack(code="AA", control_id="MSG00001", text="accepted 2 resources", trigger="A01", version="2.5",
                   receiver="HIS", receiver_facility="GYH1")
    msg = parse_message(ok, find_groups=False)
    assert msg.msa.msa_1.value == "AA" and msg.msa.msa_2.value == "MSG00001"
    assert msg.msh.msh_9.to_er7() == "ACK^A01^ACK" and msg.msh.msh_5.value == "HIS"
    bad = hl7v2.ack(code="AE", control_id="X|1", text="PID-3 (patient identifier) is required", version="2.3",
                    where="PID-3")
    segments = bad.strip("\r").split("\r")
    assert segments[1].startswith("MSA|AE|X\\F\\1|")  # field separators in data are escaped
    assert segments[2].startswith("ERR|PID-3^^^101")
    assert parse_message(bad, find_groups=False).msa.msa_1.value == "AE"
