"""Events as FHIR R4 AuditEvents (IHE BALP shape), CSV rows and normalised times."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

import orjson
import pytest
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle

from services.audit import balp, export, query
from services.contracts.events import AuditKind
from tests.unit.audit.factory import entry, event

KINDS: tuple[str, ...] = AuditKind.__args__  # type: ignore[attr-defined]


def _r4_cardinalities(res: dict) -> None:
    """What fhir.resources does not enforce: R4 AuditEvent's required elements and code set."""
    assert res["type"]["system"] and res["type"]["code"]
    assert res["recorded"] and res["action"] in {"C", "R", "U", "D", "E"}
    assert res["outcome"] in {"0", "4", "8", "12"}
    assert res["agent"] and all(isinstance(a["requestor"], bool) and a["who"] for a in res["agent"])
    assert res["source"]["observer"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_a_valid_r4_audit_event(kind: str) -> None:
    ev = event(kind)
    res = balp.to_fhir(ev, 41)
    FhirAuditEvent.model_validate(res)  # types, element names, code and URI formats
    _r4_cardinalities(res)
    assert res["id"] == ev["event_id"] and res["recorded"] == ev["occurred_at"]


def test_a_disclosure_follows_the_privacy_disclosure_pattern() -> None:
    res = balp.to_fhir(event("disclosure", purpose="HLEGAL"))
    assert res["type"]["code"] == "110106" and res["action"] == "R" and res["outcome"] == "0"
    assert {"disclose", "read"} <= {c["code"] for c in res["subtype"]}
    assert res["purposeOfEvent"][0]["coding"][0] == {"system": balp.ACT_REASON, "code": "HLEGAL"}
    roles = {a["type"]["coding"][0]["code"]: a for a in res["agent"]}
    assert roles["110152"]["who"]["identifier"]["value"] == "gy-hosp-001"  # the recipient organisation
    assert roles["IRCP"]["requestor"] is True and roles["IRCP"]["who"]["identifier"]["value"] == "dr-wang"
    patient = next(e for e in res["entity"] if e["role"]["code"] == "1")
    # The patient is the pseudonym, as an identifier: never a FHIR id, never PHI.
    assert patient["what"] == {"type": "Patient",
                               "identifier": {"system": balp.PSEUDONYM_SYSTEM, "value": "p-" + "0" * 32}}
    assert {"reference": "Condition/c-1/_history/2"} in [e["what"] for e in res["entity"]]


def test_a_denial_is_a_minor_failure_with_the_reasons() -> None:
    res = balp.to_fhir(event("denial", decision={"allow": False, "reasons": ["no_care_relationship", "x"]}))
    assert res["outcome"] == "4" and res["outcomeDesc"] == "denied: no_care_relationship, x"


def _rows(*bodies: bytes) -> list[SimpleNamespace]:
    return [SimpleNamespace(idx=i, body=b) for i, b in enumerate(bodies)]


def test_a_page_as_a_fhir_bundle_validates() -> None:
    bundle = export.events_fhir(_rows(entry(), entry("denial"), entry("ingest")), "http://x/events",
                                "http://x/events?cursor=3")
    Bundle.model_validate(bundle)
    assert bundle["link"][1] == {"relation": "next", "url": "http://x/events?cursor=3"}


def test_csv_is_an_accounting_of_disclosures_and_defuses_formulas() -> None:
    hostile = event(accessor={"id": "=HYPERLINK(\"http://evil\")", "org": "gy-police",
                              "org_type": "law_enforcement", "role": "investigator"},
                    legal={"warrant": "w-1"}, purpose="HLEGAL")
    text = export.events_csv(_rows(orjson.dumps(hostile)))
    header, row = list(csv.reader(io.StringIO(text)))
    got = dict(zip(header, row, strict=True))
    assert got["accessor_id"].startswith("'=")
    assert (got["occurred_at"], got["accessor_org"], got["purpose"], got["legal"]) == (
        hostile["occurred_at"], "gy-police", "HLEGAL", "warrant=w-1")
    assert got["resources"] == "Condition/c-1/_history/2"


@pytest.mark.parametrize(("raw", "want"), [
    ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00.000000Z"),
    ("2026-11-22T10:00:00.5Z", "2026-11-22T10:00:00.500000Z"),
    ("2026-11-22T12:00:00+02:00", "2026-11-22T10:00:00.000000Z"),
    ("2026-11-22T10:00:00", "2026-11-22T10:00:00.000000Z"),
])
def test_times_are_normalised_so_they_compare_as_strings(raw: str, want: str) -> None:
    assert query.norm_time(raw) == want
    # Second precision and fractions compare correctly once normalised.
    assert query.norm_time("2026-11-22T10:00:00Z") < query.norm_time("2026-11-22T10:00:00.5Z")


def test_unreadable_times_are_refused_or_defaulted() -> None:
    with pytest.raises(query.BadQuery):
        query.norm_time("next tuesday")
    assert query.norm_time(None, default="") == ""
