"""Reads as the records service runs them (no transaction around them), on SQLite and PostgreSQL.

The single-resource read takes a shortcut (the row and its patient's state in
one query); these tests pin that it answers exactly what the general path
answers: the newest version, 404 for an unknown id, 410 after erasure, and
the decision's audit event before any data.
"""

from __future__ import annotations

import orjson
import pytest
from sqlmodel import Session

from services.adapters.auth import Caller
from services.records.access import Authority, Denied, NotFound
from services.records.service import Reader, ReadRequest
from services.records.store import CareLink, Record, read_engine
from services.records.vault import Shredded
from tests.integration.records.support import use_case

PID = "reads-patient"
CLINICIAN = Caller(id="dr", org="gy-hosp-001", org_type="hospital", role="clinician")
STRANGER = Caller(id="dr", org="gy-hosp-002", org_type="hospital", role="clinician")
TREAT = Authority(purpose="TREAT")


def store(engine, vault, version: int, text: str) -> None:  # type: ignore[no-untyped-def]
    patient = vault.pseudonym(PID)
    with Session(engine) as s:
        row = Record(patient=patient, rtype="Condition", rid_index=vault.rid_index("Condition", "c1"),
                     version=version, hospital="gy-hosp-001", content_index=f"v{version}", submission_id="s",
                     ciphertext=b"")
        vault.seal_row(vault.data_key(s, patient, create=True), row,
                       {"resourceType": "Condition", "id": "c1", "code": {"text": text},
                        "subject": {"reference": f"Patient/{PID}"}}, [])
        s.add(row)
        if version == 1:
            s.add(CareLink(patient=patient, hospital="gy-hosp-001"))
        s.commit()


@pytest.fixture
def reader(engine, vault, settings) -> Reader:  # type: ignore[no-untyped-def]
    store(engine, vault, 1, "first")
    store(engine, vault, 2, "second")
    return use_case(Reader, read_engine(engine), vault, settings)


def test_a_single_read_returns_the_newest_version(reader: Reader) -> None:
    out = reader.read(CLINICIAN, ReadRequest(rtype="Condition", rid="c1", authority=TREAT))
    assert orjson.loads(out.body)["code"]["text"] == "second"
    assert out.event_id


def test_the_shortcut_and_the_search_agree(reader: Reader) -> None:
    single = orjson.loads(reader.read(CLINICIAN, ReadRequest(rtype="Condition", rid="c1", authority=TREAT)).body)
    found = orjson.loads(reader.read(CLINICIAN, ReadRequest(rtype="Condition", patient_id=PID,
                                                            authority=TREAT)).body)
    assert [e["resource"] for e in found["entry"]] == [single]


def test_an_older_version_is_still_readable_by_version(reader: Reader) -> None:
    doc = orjson.loads(reader.read(CLINICIAN, ReadRequest(rtype="Condition", rid="c1", version=1,
                                                          authority=TREAT)).body)
    assert doc["code"]["text"] == "first"


def test_an_unknown_id_is_not_found(reader: Reader) -> None:
    with pytest.raises(NotFound):
        reader.read(CLINICIAN, ReadRequest(rtype="Condition", rid="nope", authority=TREAT))


def test_the_care_relationship_comes_from_the_same_query(reader: Reader) -> None:
    with pytest.raises(Denied) as denied:
        reader.read(STRANGER, ReadRequest(rtype="Condition", rid="c1", authority=TREAT))
    assert denied.value.reasons == ["no_care_relationship"]


def test_after_erasure_a_single_read_is_gone(reader: Reader, engine, vault) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        vault.shred(s, vault.pseudonym(PID))
        s.commit()
    with pytest.raises(Shredded):
        reader.read(CLINICIAN, ReadRequest(rtype="Condition", rid="c1", authority=TREAT))
