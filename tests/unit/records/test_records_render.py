"""Shaping released resources by their obligations (services/records/render.py)."""

from __future__ import annotations

import orjson

from services.contracts.policy import Decision, Obligations
from services.records.render import AGGREGATE_URL, WITHHELD_URL, Released, render


def item(rtype: str, rid: str, version: int = 1, patient: str = "p-1") -> Released:
    return Released(rtype=rtype, version=version, hospital="h", labels=[],
                    resource={"resourceType": rtype, "id": rid, "subject": {"reference": "Patient/pid"},
                              "meta": {"versionId": str(version), "lastUpdated": f"t{version}"}},
                    patient=patient)


def allow(mode: str = "none") -> Decision:
    return Decision(allow=True, reasons=["r"], obligations=Obligations(deidentify=mode))  # type: ignore[arg-type]


def never(_item: Released) -> tuple[str | None, str]:
    raise AssertionError("identified data needs no pseudonym")


def test_each_resource_gets_its_own_obligations_and_aggregates_are_never_rows() -> None:
    released = [(item("Condition", "c1"), allow()), (item("Condition", "c2"), allow("aggregate_only")),
                (item("Encounter", "e1"), allow("aggregate_only"))]
    bundle = orjson.loads(render("searchset", released, {"redacted:PSY": 2}, never))
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["c1"]
    assert bundle["total"] == 1
    ext = {e["url"]: {x["url"]: x["valueInteger"] for x in e["extension"]} for e in bundle["meta"]["extension"]}
    assert ext == {AGGREGATE_URL: {"Condition": 1, "Encounter": 1}, WITHHELD_URL: {"redacted:PSY": 2}}
    assert b"c2" not in render("searchset", released, {}, never)


def test_pseudonymized_resources_use_the_recipients_pseudonym() -> None:
    out = orjson.loads(render("single", [(item("Condition", "c1"), allow("pseudonymize"))], {},
                              lambda _i: ("pid", "rp-x")))
    assert out["subject"] == {"reference": "Patient/rp-x"}


def test_a_single_read_under_aggregate_only_is_a_count() -> None:
    out = orjson.loads(render("single", [(item("Condition", "c1"), allow("aggregate_only"))], {}, never))
    assert out == {"resourceType": "Parameters", "parameter": [{"name": "Condition", "valueInteger": 1}]}


def test_history_lists_versions_newest_first() -> None:
    released = [(item("Condition", "c1", v), allow()) for v in (1, 2, 3)]
    bundle = orjson.loads(render("history", released, {}, never))
    assert bundle["type"] == "history"
    assert [e["fullUrl"] for e in bundle["entry"]] == [f"Condition/c1/_history/{v}" for v in (3, 2, 1)]
    assert bundle["entry"][0]["response"] == {"status": "200 OK", "etag": 'W/"3"', "lastModified": "t3"}


def test_the_audit_names_a_patient_by_pseudonym_only() -> None:
    assert item("Patient", "the-real-fhir-id", patient="p-9").ref_id() == "p-9"
    assert item("Condition", "c1").ref_id() == "c1"
