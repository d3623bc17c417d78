"""Reference rewriting names the element path of every reference it cannot resolve, and fixes the rest."""

from __future__ import annotations

import copy
from typing import Any

from services.fhir.validation import structural
from services.ingest.references import rewrite, rewrite_held


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


def test_the_structure_walk_hands_over_every_reference_the_rewrite_walk_finds(
        ten_resources: list[dict[str, Any]]) -> None:
    """``rewrite_held`` (references found by the structure's walk) does exactly what ``rewrite`` does."""
    ext = [{"url": "http://example.org/x", "valueReference": {"reference": "urn:uuid:p1"}}]
    crafted = [
        {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
         "subject": {"reference": "urn:uuid:p1", "extension": ext},
         "participant": [{"individual": {"reference": "Practitioner?identifier=http://npi|123"}},
                         {"individual": {"reference": "urn:uuid:nowhere"}}],
         "reasonReference": [{"reference": "Condition?code=x"}],
         "contained": [{"resourceType": "Patient", "id": "c", "generalPractitioner": [{"reference": "urn:oid:1.2"}]}],
         "_status": {"extension": ext}},
        {"resourceType": "DetectedIssue", "id": "d1", "status": "final", "reference": "urn:uuid:nowhere"},
    ]
    full_urls = {"urn:uuid:p1": "Patient/p1"}
    for doc in ten_resources + crafted:
        walked, held = copy.deepcopy(doc), copy.deepcopy(doc)
        holders: list[Any] = []
        assert structural(held, "R", holders)[0] == []
        assert rewrite_held(holders, full_urls=full_urls, ids=None) == rewrite(walked, "R", full_urls=full_urls,
                                                                                 ids=None)
        assert held == walked
