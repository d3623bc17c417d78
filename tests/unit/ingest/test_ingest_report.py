"""The quality report counts what the regulator's metrics need, on hand-made resources with known answers."""

from __future__ import annotations

from datetime import UTC, datetime

from services.ingest.report import Tally, build_report, clinical_time, lag_bucket

ARRIVED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def patient(**extra: object) -> dict[str, object]:
    return {"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:x", "value": "1"}],
            "birthDate": "1980-02-03", "gender": "female", **extra}


def encounter(end: str, rid: str = "e1") -> dict[str, object]:
    return {"resourceType": "Encounter", "id": rid, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "period": {"start": "2026-11-21T08:00:00Z", "end": end},
            "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "444814009"}]}],
            "type": [{"coding": [{"system": "http://hospital.example/local", "code": "X1"}]}]}


def test_completeness_counts_each_priority_field_present() -> None:
    tally = Tally()
    tally.observe(patient(), received=ARRIVED)
    tally.observe({"resourceType": "Patient", "id": "p2", "gender": "male"}, received=ARRIVED)
    t = build_report(hospital="h", submission_id="s", transport="fhir", accepted=True, tally=tally).types["Patient"]
    assert (t.count, t.accepted, t.fields_expected) == (2, 2, 8)
    assert t.fields == {"identifier": 1, "birthDate": 1, "gender": 2}


def test_codings_in_recognised_systems_and_structural_codes_ignored() -> None:
    tally = Tally()
    tally.observe(encounter("2026-11-22T10:00:00Z"), received=ARRIVED)
    t = tally.types["Encounter"]
    # v3-ActCode is HL7 structure (not graded); SNOMED is recognised, the local code is not
    assert (t.codings, t.recognised) == (2, 1)


def test_lag_from_clinical_time_to_arrival() -> None:
    tally = Tally()
    tally.observe(encounter("2026-11-22T10:00:00Z", "a"), received=ARRIVED)  # 2 h
    tally.observe(encounter("2026-11-19T12:00:00Z", "b"), received=ARRIVED)  # 72 h
    tally.observe({"resourceType": "Organization", "id": "o"}, received=ARRIVED)  # no clinical time
    assert tally.types["Encounter"].lag == {"6": 1, "72": 1}
    assert tally.types["Organization"].lag_unknown == 1
    assert lag_bucket(0.5) == "1" and lag_bucket(24) == "24" and lag_bucket(9000) == "inf"
    assert clinical_time({"resourceType": "Condition", "recordedDate": "2026-11-01"}) == datetime(2026, 11, 1,
                                                                                                   tzinfo=UTC)


def test_defaults_and_duplicates() -> None:
    tally = Tally()
    tally.observe(patient(gender="unknown"), received=ARRIVED)
    tally.observe(patient(id="p9", birthDate="1900-01-01"), received=ARRIVED)
    tally.observe(patient(id="p10"), received=ARRIVED)
    tally.observe(patient(id="p11"), received=ARRIVED)  # same content as p10 under another id: a duplicate
    t = tally.types["Patient"]
    assert t.defaults == 2
    assert t.duplicates == 1


def test_rejections_count_their_issue_codes_and_merge_adds_up() -> None:
    one, two = Tally(), Tally()
    one.rejected("Observation", [("required", "Bundle.entry[3].resource.status"), ("value", None)])
    two.rejected(None, [("structure", "line 4")])
    two.rejected("Observation", [("required", "Observation.status"), ("invalid", "line 9.component[2].code")])
    one.observe(patient(), received=ARRIVED)
    two.observe(patient(id="other"), received=ARRIVED)  # the same content in another chunk
    one.merge(two)
    report = build_report(hospital="h", submission_id="s", transport="ndjson", accepted=True, tally=one)
    assert report.types["Observation"].rejected == 2
    assert report.types["Observation"].reasons == {"required Observation.status": 2, "value": 1,
                                                   "invalid Observation.component.code": 1}
    assert report.types["unknown"].reasons == {"structure": 1}
    assert report.types["Patient"].duplicates == 1


def test_the_report_carries_no_identifier_or_value() -> None:
    tally = Tally()
    tally.observe(patient(name=[{"family": "Zhangsan"}]), received=ARRIVED)
    raw = build_report(hospital="h", submission_id="s", transport="fhir", accepted=True,
                       tally=tally).model_dump_json()
    assert "Zhangsan" not in raw and "1980" not in raw and "p1" not in raw


def test_validity_warnings_are_counted_per_type_and_rule() -> None:
    tally = Tally()
    tally.observe(patient(), warnings=["binding-extensible", "binding-extensible"], received=ARRIVED)
    tally.observe(patient(id="p2", gender="male"), warnings=[None], received=ARRIVED)
    other = Tally()
    other.observe(encounter("2026-11-22T10:00:00Z"), warnings=["code-system"], received=ARRIVED)
    other.observe(patient(id="p3", gender="other"), warnings=["binding-extensible"], received=ARRIVED)
    tally.merge(other)
    types = build_report(hospital="h", submission_id="s", transport="fhir", accepted=True, tally=tally).types
    assert (types["Patient"].warnings, types["Patient"].warning_rules) == (4, {"binding-extensible": 3,
                                                                               "unnamed": 1})
    assert (types["Encounter"].warnings, types["Encounter"].warning_rules) == (1, {"code-system": 1})
