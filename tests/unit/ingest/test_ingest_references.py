"""Reference rewriting names the element path of every reference it cannot resolve, and fixes the rest."""

from __future__ import annotations

import copy
from typing import Any

from services.fhir.validation import check_resource, structural
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


def test_threads_checking_at_once_each_get_their_own_references(ten_resources: list[dict[str, Any]]) -> None:
    """The jobs thread and request threads validate at the same time: no walk may hand its finds to another."""
    import sys
    import threading

    docs = [d for d in ten_resources if "subject" in d or "patient" in d][:400]
    expected = [len(check_resource(copy.deepcopy(d), "R").holders) for d in docs]
    wrong: list[int] = []

    def run() -> None:
        mine = [copy.deepcopy(d) for d in docs]
        for k, doc in enumerate(mine):
            held = check_resource(doc, "R").holders
            if len(held) != expected[k] or any(not _inside(node, doc) for node, _ in held):
                wrong.append(k)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert wrong == []


def _inside(node: dict[str, Any], doc: Any) -> bool:
    if doc is node:
        return True
    if isinstance(doc, dict):
        return any(_inside(node, v) for v in doc.values())
    if isinstance(doc, list):
        return any(_inside(node, v) for v in doc)
    return False
