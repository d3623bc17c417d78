"""A patient's record in words: names not codes, current and past apart, Guiyang dates, a PDF that is text."""

from __future__ import annotations

import io
from typing import Any

import pytest
from pypdf import PdfReader

from services.portal import readable, record_pdf
from services.portal.terms import CVX, LOINC, SNOMED

REGISTRY = {"orgs": {"gy-hosp-001": {"name": "Guiyang First People's Hospital", "name_zh": "贵阳市第一人民医院"}}}
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def _res(rtype: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": rtype, "id": fields.pop("id", rtype.lower()), "meta": {"source": "gy-hosp-001"}, **fields}


def _condition(code: str, status: str, onset: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": SNOMED, "code": code, **({"display": display} if display else {})}
    return _res("Condition", code={"coding": [coding]}, onsetDateTime=onset,
                clinicalStatus={"coding": [{"system": CLINICAL, "code": status}]})


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def _section(sections: list[readable.Section], key: str) -> readable.Section:
    return next(s for s in sections if s.key == key)


BUNDLE = _bundle(
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "Wang", "given": ["Fang"]}], "birthDate": "1961-02-03"},
    _condition("38341003", "active", "2019-05-01"),  # no display at all: the glossary names it
    _condition("10509002", "resolved", "2018-01-10T18:30:00Z", display="Acute bronchitis (disorder)"),
    _condition("999999999", "active", "2020-01-01"),  # unknown code, no display
    _condition("73211009", "active", "2021-03-04", display="Diabetes mellitus (disorder)"),
    _res("MedicationRequest", id="m1", status="active", authoredOn="2020-02-01",
         medicationCodeableConcept={"text": "lisinopril 10 MG Oral Tablet"}),
    _res("MedicationRequest", id="m2", status="stopped", authoredOn="2015-02-01",
         medicationCodeableConcept={"text": "amoxicillin 250 MG"}),
    _res("Observation", id="o1", status="final", effectiveDateTime="2020-02-01T09:00:00Z",
         code={"coding": [{"system": LOINC, "code": "4548-4"}]},
         valueQuantity={"value": 7.0, "unit": "%"}, interpretation=[{"coding": [{"code": "H"}]}]),
    _res("Observation", id="o2", status="final", effectiveDateTime="2019-02-01T09:00:00Z",
         code={"coding": [{"system": LOINC, "code": "4548-4"}]}, valueQuantity={"value": 6.1, "unit": "%"}),
    _res("Observation", id="o3", status="final", effectiveDateTime="2020-02-01T09:00:00Z",
         code={"coding": [{"system": LOINC, "code": "85354-9"}]},
         component=[{"code": {"text": "sys"}, "valueQuantity": {"value": 142, "unit": "mmHg"}},
                    {"code": {"text": "dia"}, "valueQuantity": {"value": 91, "unit": "mmHg"}}]),
    _res("Encounter", id="e1", status="finished", period={"start": "2020-02-01T17:00:00Z"},
         **{"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}),
    _res("Immunization", id="i1", status="completed", occurrenceDateTime="2020-10-01",
         vaccineCode={"coding": [{"system": CVX, "code": "140"}]}),
    _res("AllergyIntolerance", id="a1", criticality="high", code={"text": "Penicillin"},
         clinicalStatus={"coding": [{"code": "active"}]}),
    _res("DocumentReference", id="d1", status="current", date="2020-02-01T09:00:00Z",
         type={"coding": [{"system": LOINC, "code": "34117-2"}]}),
)


def test_conditions_are_named_in_words_and_grouped_current_and_past() -> None:
    conditions = _section(readable.readable_record(BUNDLE), "conditions")
    current = [(i.name, i.name_is_msgid) for i in conditions.current]
    assert ("High blood pressure (hypertension)", True) in current  # the glossary's msgid, translated by the page
    assert ("Diabetes mellitus", False) in current  # the display, without SNOMED CT's "(disorder)"
    assert [i.name for i in conditions.past] == ["Acute bronchitis"]
    unnamed = next(i for i in conditions.current if i.code_hint)
    assert (unnamed.name, unnamed.code_hint) == (readable.UNNAMED, "SNOMED CT 999999999")
    assert not any("38341003" in i.name for i in conditions.current)  # never a code as the name


def test_dates_are_guiyang_calendar_dates_and_hospitals_registry_ids() -> None:
    sections = readable.readable_record(BUNDLE)
    visit = _section(sections, "visits").past[0]
    assert visit.date == "2020-02-02"  # 17:00 UTC is 01:00 the next day in Guiyang
    assert visit.name == "Outpatient visit" and visit.hospital == "gy-hosp-001"
    assert _section(sections, "conditions").past[0].date == "2018-01-11"
    assert readable.hospitals_of(sections) == ["gy-hosp-001"]


def test_medicines_results_and_the_rest() -> None:
    sections = readable.readable_record(BUNDLE)
    meds = _section(sections, "medications")
    assert [i.name for i in meds.current] == ["lisinopril 10 MG Oral Tablet"]
    assert [i.status for i in meds.past] == ["stopped"]
    results = _section(sections, "results")
    latest = {i.name: i for i in results.current}
    assert latest["Average blood sugar (HbA1c)"].detail == "7 %" and latest["Average blood sugar (HbA1c)"].flag == "H"
    assert latest["Blood pressure"].detail == "142/91 mmHg"
    assert [i.detail for i in results.past] == ["6.1 %"]  # an earlier value of the same test
    assert _section(sections, "vaccinations").current[0].name == "Flu vaccine (seasonal)"
    allergy = _section(sections, "allergies").current[0]
    assert (allergy.name, allergy.flag) == ("Penicillin", "high")
    assert _section(sections, "documents").current[0].name == "History and physical examination note"


def test_nonsense_in_a_bundle_is_skipped_not_a_crash() -> None:
    odd = {"resourceType": "Bundle", "entry": [None, {"resource": "x"}, {"resource": {"resourceType": "Condition"}},
                                               {"resource": {"resourceType": "Observation", "code": "x",
                                                             "valueQuantity": {"value": None}}}]}
    sections = readable.readable_record(odd)
    assert _section(sections, "conditions").current[0].name == readable.UNNAMED


@pytest.mark.parametrize(("lang", "words"), [
    ("zh_CN", ["我的健康档案", "高血压", "贵阳市第一人民医院", "Wang", "lisinopril"]),
    ("en", ["My health record", "High blood pressure (hypertension)", "Guiyang First People's Hospital"]),
])
def test_the_pdf_is_a_pdf_whose_text_reads_back(lang: str, words: list[str]) -> None:
    pdf = record_pdf.render(BUNDLE, lang=lang, registry=REGISTRY)
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    text = "\n".join(page.extract_text() for page in reader.pages)
    for word in words:
        assert word in text, (word, text[:400])
    assert "38341003" not in text  # a name, not a code
