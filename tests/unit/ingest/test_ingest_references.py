"""Reference rewriting names the element path of every reference it cannot resolve, and fixes the rest."""

from __future__ import annotations

from services.ingest.references import rewrite


def test_unresolvable_references_are_named_by_their_element_path() -> None:
    doc = {"resourceType": "Encounter", "id": "e1",
           "subject": {"reference": "urn:uuid:p1"},
           "participant": [{"individual": {"reference": "Practitioner?identifier=http://npi|123"}},
                           {"individual": {"reference": "urn:uuid:nowhere"}}],
           "reasonReference": [{"reference": "Condition?code=x"}],
           "serviceProvider": {"reference": "Organization/o1"}}
    issues = rewrite(doc, "Bundle.entry[2].resource", full_urls={"urn:uuid:p1": "Patient/p1"}, ids=None)
    assert [(i.expression, i.code) for i in issues] == [
        ("Bundle.entry[2].resource.participant[1].individual.reference", "not-found"),
        ("Bundle.entry[2].resource.reasonReference[0].reference", "not-supported")]
    assert all("nowhere" not in i.diagnostics and "code=x" not in i.diagnostics for i in issues)
    assert doc["subject"] == {"reference": "Patient/p1"}
    assert doc["participant"][0]["individual"] == {"type": "Practitioner",
                                                   "identifier": {"system": "http://npi", "value": "123"}}
    assert doc["serviceProvider"] == {"reference": "Organization/o1"}
