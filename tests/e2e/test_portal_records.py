"""The patient's records in plain words, and the copies they download, on the running platform.

The page is one audited look at the patient's own records (counted, not listed, in their trail); each
download is a ``download`` event of its own that the trail lists. The FHIR copy parses as an R4 Bundle
holding this patient's resources and nobody else's; the PDF is a PDF whose text names the condition.
"""

from __future__ import annotations

import io
import re
import uuid
from typing import Any

import httpx
import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from pypdf import PdfReader

from services.adapters.keys import PlatformKeys
from services.portal.accounts import Accounts
from services.portal.config import PortalSettings
from tests.conftest import auth, first_patient, wait_for
from tests.e2e.test_portal import sign_in
from tests.integration.records.support import HYPERTENSION, condition, encounter, fresh_patient, ingest

PASSWORD = "correct horse battery staple"


def _browser(settings: Any, lang: str = "en") -> httpx.Client:
    return httpx.Client(base_url=settings.portal_url, timeout=90, follow_redirects=True,
                        headers={"Accept-Language": lang})


@pytest.fixture(scope="module")
def two(loaded, settings, token) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Two patients of this module's own, each with a visit and high blood pressure (a code with no display)."""
    ps = PortalSettings()
    accounts = Accounts(ps.store_url, PlatformKeys(ps.state_dir).portal_key())
    out: dict[str, Any] = {}
    for who in ("mine", "other"):
        p = fresh_patient(first_patient())
        cond = condition(p["id"], HYPERTENSION, "2019-05-01")
        ingest(settings, token, p, encounter(p["id"], "2020-02-01T17:00:00Z"), cond)
        username = f"rec-{who}-{uuid.uuid4().hex[:8]}"
        accounts.create(username, PASSWORD, "patient", p["id"])
        out[who] = {"id": p["id"], "username": username, "condition": cond["id"]}
    return out


def _trail(settings: Any, token: Any, pid: str, **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{settings.audit_url}/trail", timeout=30, params=params,
                  headers=auth(token("healthgov-portal", "audit", role="patient", patient=pid, purpose="PATRQT")))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_the_record_reads_in_words_in_chinese_and_english(two, settings) -> None:  # type: ignore[no-untyped-def]
    with _browser(settings, "zh-CN,zh;q=0.9") as b:
        sign_in(b, two["mine"]["username"])
        zh = b.get("/me/records")
    assert zh.status_code == 200
    assert "高血压" in zh.text and "贵阳市第一人民医院" in zh.text and "门诊就诊" in zh.text
    assert "2020-02-02" in zh.text  # 17:00 UTC is the next morning in Guiyang
    assert HYPERTENSION not in zh.text  # the name, never the code
    with _browser(settings) as b:
        sign_in(b, two["mine"]["username"])
        en = b.get("/me/records")
    assert "High blood pressure (hypertension)" in en.text and "Guiyang First People" in en.text


def test_the_fhir_copy_is_this_patients_bundle_and_its_download_is_audited(two, settings, token) -> None:  # type: ignore[no-untyped-def]
    mine, other = two["mine"], two["other"]
    before = _trail(settings, token, mine["id"], kinds=["download"])["total"]
    with _browser(settings) as b:
        sign_in(b, mine["username"])
        r = b.get("/me/records/fhir")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert r.headers["content-disposition"].startswith("attachment;")
    bundle = Bundle.model_validate(orjson.loads(r.content))  # FHIR R4 structure and types
    assert bundle.type in ("searchset", "collection")
    resources = [e.resource for e in bundle.entry or []]
    ids = {(x.get_resource_type(), x.id) for x in resources}
    assert ("Patient", mine["id"]) in ids and ("Condition", mine["condition"]) in ids
    assert other["id"].encode() not in r.content and other["condition"].encode() not in r.content
    named = set(re.findall(rb'"reference":"(Patient/[^"]+)"', r.content))
    assert named == {f"Patient/{mine['id']}".encode()}  # every reference to a patient is to this one

    def listed() -> bool:
        got = _trail(settings, token, mine["id"], kinds=["download"])
        return got["total"] == before + 1 and got["events"][0]["details"].get("format") == "fhir"

    wait_for(listed, 60, "the download in the patient's trail, as an entry of its own")


def test_the_pdf_copy_is_a_pdf_naming_the_condition_and_is_audited(two, settings, token) -> None:  # type: ignore[no-untyped-def]
    mine = two["mine"]
    with _browser(settings, "zh-CN") as b:
        sign_in(b, mine["username"])
        r = b.get("/me/records/pdf")
        assert r.status_code == 200, r.text[:300]
        assert r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF-")
        text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(r.content)).pages)
        assert "高血压" in text and "贵阳市第一人民医院" in text

        def listed() -> bool:
            events = _trail(settings, token, mine["id"], kinds=["download"])["events"]
            return any(e["details"].get("format") == "pdf" for e in events)

        wait_for(listed, 60, "the PDF download in the patient's trail")
        page = b.get("/me/access").text
    assert "下载了您的记录副本" in page and "PDF" in page  # the trail lists it, in words


def test_viewing_the_page_is_counted_as_an_own_view_not_listed(two, settings, token) -> None:  # type: ignore[no-untyped-def]
    mine = two["mine"]
    first = _trail(settings, token, mine["id"])
    with _browser(settings) as b:
        sign_in(b, mine["username"])
        assert b.get("/me/records").status_code == 200

    def counted() -> bool:
        now = _trail(settings, token, mine["id"])
        return now["own_views"]["count"] > first["own_views"]["count"]

    wait_for(counted, 60, "the page view counted among the patient's own views")
    assert _trail(settings, token, mine["id"])["total"] == first["total"]  # not a row of its own


def test_records_refuses_a_download_marker_from_anyone_but_the_patient(two, settings, token) -> None:  # type: ignore[no-untyped-def]
    pid = two["mine"]["id"]
    url = f"{settings.records_url}/fhir/Patient/{pid}/$everything"
    hospital = httpx.get(url, timeout=30, headers=auth(token("gy-hosp-001", purpose="TREAT"),
                                                       **{"X-Healthgov-Download": "pdf"}))
    assert hospital.status_code == 400 and hospital.json()["resourceType"] == "OperationOutcome"
    odd = httpx.get(url, timeout=30, headers=auth(token("healthgov-portal", role="patient", patient=pid,
                                                        purpose="PATRQT"), **{"X-Healthgov-Download": "docx"}))
    assert odd.status_code == 400 and odd.json()["resourceType"] == "OperationOutcome"
