"""A guardian acts for their child and for nobody else, and every proxy view is in the child's trail.

The portal signs the child's ``patient`` claim for a guardian only through a link the signed-in account holds,
found by the link's random id. These tests try the ways round it on the real stack: another guardian's link, the
child's own record id, a made-up id, no session; and the token a guardian's session yields trying to change
anything (the policy's ``guardian_reads_only``).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from services.adapters.keys import PlatformKeys
from services.portal.accounts import Accounts
from services.portal.config import PortalSettings
from services.portal.proxies import Proxies
from tests.conftest import auth, first_patient, wait_for
from tests.integration.records.support import HYPERTENSION, condition, encounter, fresh_patient, ingest, permit

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def _browser(settings: Any) -> httpx.Client:
    return httpx.Client(base_url=settings.portal_url, timeout=90, follow_redirects=True,
                        headers={"Accept-Language": "en"})


def _sign_in(b: httpx.Client, username: str) -> None:
    form = CSRF.search(b.get("/").text)
    r = b.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": form.group(1) if form else ""})
    assert r.status_code == 200 and "/me" in str(r.url), r.status_code


@pytest.fixture(scope="module")
def family(loaded, settings, token) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Two guardians, each with a child of their own (each child with a condition of their own)."""
    ps = PortalSettings()
    accounts = Accounts(ps.store_url, PlatformKeys(ps.state_dir).portal_key())
    proxies = Proxies(accounts.engine, PlatformKeys(ps.state_dir).portal_key())
    out: dict[str, Any] = {}
    for who in ("a", "b"):
        parent, child = fresh_patient(first_patient()), fresh_patient(first_patient())
        cond = condition(child["id"], HYPERTENSION, "2019-05-01")
        ingest(settings, token, parent, encounter(parent["id"], "2020-02-01T09:00:00Z"))
        ingest(settings, token, child, encounter(child["id"], "2020-03-01T09:00:00Z"), cond)
        username = f"guardian-{who}-{uuid.uuid4().hex[:8]}"
        accounts.create(username, PASSWORD, "patient", parent["id"])
        link = proxies.link(username, child["id"], f"Child {who.upper()}")
        out[who] = {"username": username, "parent": parent["id"], "child": child["id"], "link": link,
                    "condition": cond["id"]}
    return out


def _trail(settings: Any, token: Any, pid: str, **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{settings.audit_url}/trail", timeout=30, params=params,
                  headers=auth(token("healthgov-portal", "audit", role="patient", patient=pid, purpose="PATRQT")))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_guardian_reads_the_childs_records_and_each_view_is_in_the_childs_trail(family, settings, token) -> None:  # type: ignore[no-untyped-def]
    a = family["a"]
    before = _trail(settings, token, a["child"])
    with _browser(settings) as b:
        _sign_in(b, a["username"])
        home = b.get("/me")
        assert f"/for/{a['link']}/records" in home.text and "Child A" in home.text
        page = b.get(f"/for/{a['link']}/records")
        assert page.status_code == 200
        assert "Records of Child A" in page.text and "High blood pressure (hypertension)" in page.text
        copy = b.get(f"/for/{a['link']}/records/fhir")
        assert copy.status_code == 200 and a["condition"].encode() in copy.content
        assert a["parent"].encode() not in copy.content  # the child's record, not the guardian's own

    def listed() -> bool:
        got = _trail(settings, token, a["child"])
        mine = [e for e in got["events"] if e["accessor"].get("role") == "guardian"]
        return got["total"] >= before["total"] + 2 and {e["kind"] for e in mine} >= {"disclosure", "download"}

    wait_for(listed, 60, "the guardian's views as rows of the child's trail")
    events = [e for e in _trail(settings, token, a["child"])["events"] if e["accessor"].get("role") == "guardian"]
    assert {e["accessor"]["id"] for e in events} == {a["username"]}  # in the guardian's name
    assert {e["purpose"] for e in events} == {"PWATRNY"}
    with _browser(settings) as b:
        _sign_in(b, a["username"])
        trail = b.get(f"/for/{a['link']}/access")
    assert trail.status_code == 200 and f"Your guardian {a['username']}, through this portal," in trail.text


@pytest.mark.parametrize("path", ["/for/{link}/records", "/for/{link}/records/fhir", "/for/{link}/records/pdf",
                                  "/for/{link}/access"])
def test_a_guardian_cannot_reach_another_child_or_patient(family, settings, path: str) -> None:  # type: ignore[no-untyped-def]
    a, b_ = family["a"], family["b"]
    tries = [b_["link"], b_["child"], a["child"], a["parent"], "x" * 22, "..%2F..%2Fme", "%00", a["link"].upper()]
    with _browser(settings) as b:
        _sign_in(b, a["username"])
        for link in tries:
            r = b.get(path.format(link=link))
            assert r.status_code == 404, (link, r.status_code)
            for secret in (b_["child"], b_["condition"], "Child B", "hypertension"):
                assert secret == link or secret not in r.text, (link, secret)  # only what was sent comes back
        assert b.get(path.format(link=a["link"])).status_code == 200  # the account's own link works


def test_without_a_session_a_link_leads_to_sign_in(family, settings) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=settings.portal_url, timeout=30) as b:
        r = b.get(f"/for/{family['a']['link']}/records")
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_a_guardians_token_changes_nothing(family, settings, token) -> None:  # type: ignore[no-untyped-def]
    """What the portal signs for a guardian reads; records refuses it any change, audited."""
    a = family["a"]
    guardian = auth(token("healthgov-portal", role="guardian", patient=a["child"], purpose="PWATRNY"))
    r = httpx.post(f"{settings.records_url}/fhir/Consent", json=permit(a["child"], "gz-insurer-1", "HPAYMT"),
                   headers=guardian, timeout=30)
    assert r.status_code == 403 and "guardian_reads_only" in r.text
    erase = httpx.delete(f"{settings.records_url}/fhir/Patient/{a['child']}", timeout=30,
                         headers=auth(token("healthgov-portal", role="guardian", patient=a["child"],
                                            purpose="PWATRNY")))
    assert erase.status_code == 403 and "guardian_reads_only" in erase.text


def test_a_hospital_cannot_claim_to_be_a_guardian(family, settings, token) -> None:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{family['a']['child']}/$everything", timeout=30,
                  headers=auth(token("gy-hosp-002", role="clinician", purpose="PWATRNY")))
    assert r.status_code == 403 and "purpose_not_permitted_for_org_type" in r.text


def test_a_guardian_checks_the_proofs_of_the_childs_trail_and_no_other(family, settings, token) -> None:  # type: ignore[no-untyped-def]
    """The child's trail links each entry's proof under the guardian's link (the guardian's own session holds no
    patient token for the child); another child's entries stay out of reach, and reporting stays the patient's."""
    a, b_ = family["a"], family["b"]
    with _browser(settings) as b:
        _sign_in(b, a["username"])
        b.get(f"/for/{a['link']}/records")  # at least one entry in the child's trail
        b.get(f"/for/{b_['link']}/records")  # not this account's: 404, nothing read
    wait_for(lambda: _trail(settings, token, a["child"])["total"] > 0, 60, "an entry in the child's trail")
    event = _trail(settings, token, a["child"])["events"][0]["event_id"]
    with _browser(settings) as b:
        _sign_in(b, a["username"])
        trail = b.get(f"/for/{a['link']}/access").text
        assert f'href="/for/{a["link"]}/receipts/{event}"' in trail
        assert f'href="/receipts/{event}"' not in trail and "/me/complaints/new" not in trail
        proof = b.get(f"/for/{a['link']}/receipts/{event}")
        assert proof.status_code == 200 and event in proof.text
        assert f'href="/for/{a["link"]}/receipts/{event}/download"' in proof.text
        receipt = b.get(f"/for/{a['link']}/receipts/{event}/download")
        assert receipt.status_code == 200 and receipt.headers["content-type"].startswith("application/json")
        assert event in receipt.text
        # Another guardian's link, or this link with another child's event: nothing comes back.
        assert b.get(f"/for/{b_['link']}/receipts/{event}").status_code == 404
        assert b.get(f"/for/{b_['link']}/receipts/{event}/download").status_code == 404
    with _browser(settings) as other:
        _sign_in(other, b_["username"])
        other.get(f"/for/{b_['link']}/records")
    wait_for(lambda: _trail(settings, token, b_["child"])["total"] > 0, 60, "an entry in the other child's trail")
    theirs = _trail(settings, token, b_["child"])["events"][0]["event_id"]
    with _browser(settings) as b:
        _sign_in(b, a["username"])
        for path in (f"/for/{a['link']}/receipts/{theirs}", f"/for/{a['link']}/receipts/{theirs}/download"):
            r = b.get(path)
            assert r.status_code in (403, 404), (path, r.status_code)
            assert b_["child"] not in r.text
