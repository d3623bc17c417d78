"""The audit API against real OPA and PostgreSQL: who sees what, filters, pages, exports, receipts."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from services.tlog import note, receipt, wire
from services.tlog.canonical import canonical_json
from tests.conftest import auth
from tests.integration.audit.conftest import Server
from tests.unit.audit.factory import event

ALICE, BOB = "alice-" + uuid.uuid4().hex[:8], "bob-" + uuid.uuid4().hex[:8]
ACCESSORS = [("dr-wang", "gy-hosp-001", "hospital", "TREAT"), ("dr-li", "gy-hosp-002", "hospital", "ETREAT"),
             ("officer-zhao", "gy-police", "law_enforcement", "HLEGAL"),
             ("cdc-1", "gy-cdc", "public_health", "PUBHLTH"), ("ins-1", "gz-insurer-1", "insurer", "HPAYMT")]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def trail(pg_server: Server, stack) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A log of 40 events about Alice and Bob by five accessors, some denied, some sealed."""
    svc = pg_server.svc
    now = datetime.now(UTC)
    docs: list[dict[str, Any]] = []
    for i in range(40):
        who, org, org_type, purpose = ACCESSORS[i % 5]
        denied = i % 7 == 3
        patient = svc.pseudonym(ALICE if i % 2 == 0 else BOB)
        seal = None
        if org_type == "law_enforcement":
            seal = _iso(now + timedelta(days=30)) if i < 20 else _iso(now - timedelta(days=1))
        doc = event("denial" if denied else "disclosure", patient=patient, purpose=purpose,
                    occurred_at=_iso(now - timedelta(hours=40 - i)),
                    accessor={"id": who, "org": org, "org_type": org_type, "role": "staff"})
        doc["decision"] = {**doc["decision"], "allow": not denied,
                           "obligations": {**doc["decision"]["obligations"], "notify_after": seal}}
        docs.append(doc)
    svc.log.append([canonical_json(d) for d in docs])
    svc.checkpointer.checkpoint()
    return {"url": pg_server.url, "docs": docs, "svc": svc, "now": now}


def _get(trail: dict[str, Any], path: str, tok: str | None, **params: Any) -> httpx.Response:
    headers = auth(tok) if tok else {}
    return httpx.get(trail["url"] + path, params=params, headers=headers, timeout=30)


def _regulator(token) -> str:  # type: ignore[no-untyped-def]
    return token("gz-nhc", "audit", role="regulator", purpose="HCOMPL")


def _patient(token, fhir_id: str) -> str:  # type: ignore[no-untyped-def]
    return token("healthgov-portal", "audit", role="patient", patient=fhir_id, purpose="PATRQT")


def _ids(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [e["event_id"] for e in resp.json()["events"]]


def test_who_may_read_the_trail(trail, token) -> None:  # type: ignore[no-untyped-def]
    assert _get(trail, "/events", None).status_code == 401
    hospital = _get(trail, "/events", token("gy-hosp-001", "audit", role="clinician", purpose="TREAT"))
    assert hospital.status_code == 403 and "audit_read_not_permitted" in hospital.text
    police = _get(trail, "/events", token("gy-police", "audit", role="investigator", purpose="HLEGAL"))
    assert police.status_code == 403
    assert len(_ids(_get(trail, "/events", _regulator(token), limit=1000))) == 40
    # Only the portal's key may carry a patient claim: a hospital forging one is refused before OPA.
    forged = _get(trail, "/events", token("gy-hosp-001", "audit", role="patient", patient=ALICE, purpose="PATRQT"))
    assert forged.status_code == 403


@pytest.mark.parametrize(("param", "value", "pick"), [
    ("kind", "denial", lambda d: d["kind"] == "denial"),
    ("outcome", "allowed", lambda d: d["decision"]["allow"]),
    ("org_type", "law_enforcement", lambda d: d["accessor"]["org_type"] == "law_enforcement"),
    ("accessor_org", "gy-hosp-002", lambda d: d["accessor"]["org"] == "gy-hosp-002"),
    ("accessor", "cdc-1", lambda d: d["accessor"]["id"] == "cdc-1"),
    ("purpose", "HPAYMT", lambda d: d["purpose"] == "HPAYMT"),
    ("patient", BOB, "bob"),
])
def test_each_filter_selects_exactly_the_matching_events(trail, token, param: str, value: str, pick) -> None:  # type: ignore[no-untyped-def]
    if pick == "bob":
        bob = trail["svc"].pseudonym(BOB)
        pick = lambda d: d["patient"] == bob  # noqa: E731
    want = [d["event_id"] for d in trail["docs"] if pick(d)]
    assert want and len(want) < 40
    assert _ids(_get(trail, "/events", _regulator(token), limit=1000, **{param: value})) == want


def test_time_window_and_cursor_pages(trail, token) -> None:  # type: ignore[no-untyped-def]
    docs = trail["docs"]
    since, until = docs[10]["occurred_at"], docs[25]["occurred_at"]
    got: list[str] = []
    cursor: int | None = 0
    pages = 0
    while cursor is not None:
        page = _get(trail, "/events", _regulator(token), since=since, until=until, limit=4, cursor=cursor).json()
        got += [e["event_id"] for e in page["events"]]
        cursor, pages = page["next_cursor"], pages + 1
    assert got == [d["event_id"] for d in docs[10:25]] and pages == 4
    bad = _get(trail, "/events", _regulator(token), since="yesterday")
    assert bad.status_code == 400


def test_csv_and_fhir_exports(trail, token) -> None:  # type: ignore[no-untyped-def]
    resp = _get(trail, "/events", _regulator(token), format="csv", limit=15, kind="disclosure")
    assert resp.headers["content-type"].startswith("text/csv") and "rel=\"next\"" in resp.headers["link"]
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    want = [d for d in trail["docs"] if d["kind"] == "disclosure"][:15]
    assert [r["event_id"] for r in rows] == [d["event_id"] for d in want]
    assert [r["accessor_org"] for r in rows] == [d["accessor"]["org"] for d in want]
    fhir = _get(trail, "/events", _regulator(token), format="fhir", limit=5)
    assert fhir.headers["content-type"].startswith("application/fhir+json")
    bundle = fhir.json()
    Bundle.model_validate(bundle)
    assert [e["resource"]["id"] for e in bundle["entry"]] == [d["event_id"] for d in trail["docs"][:5]]
    assert bundle["link"][-1]["relation"] == "next"


def test_a_patient_sees_only_their_own_unsealed_events(trail, token) -> None:  # type: ignore[no-untyped-def]
    alice = trail["svc"].pseudonym(ALICE)
    want = [d["event_id"] for d in trail["docs"] if d["patient"] == alice
            and (d["decision"]["obligations"]["notify_after"] or "") < _iso(datetime.now(UTC))]
    sealed = [d["event_id"] for d in trail["docs"] if d["patient"] == alice and d["event_id"] not in want]
    assert sealed, "the trail has sealed events about Alice"
    tok = _patient(token, ALICE)
    assert _ids(_get(trail, "/events", tok, limit=1000)) == want
    # Asking for Bob, by id or by pseudonym, still yields only Alice's events.
    bob = trail["svc"].pseudonym(BOB)
    assert _ids(_get(trail, "/events", _patient(token, ALICE), patient=BOB, limit=1000)) == want
    assert _ids(_get(trail, "/events", _patient(token, ALICE), pseudonym=bob, limit=1000)) == want
    # The regulator sees the sealed ones.
    regulator = _ids(_get(trail, "/events", _regulator(token), patient=ALICE, limit=1000))
    assert set(sealed) <= set(regulator)
    # And stats follow the same scope.
    stats = _get(trail, "/stats", _patient(token, ALICE)).json()
    assert stats["events"] == len(want)
    assert _get(trail, "/entries", _patient(token, ALICE), start=0, end=10).status_code == 403


def test_receipts_for_whom_they_concern(trail, token) -> None:  # type: ignore[no-untyped-def]
    docs, svc = trail["docs"], trail["svc"]
    alice, vkey = svc.pseudonym(ALICE), httpx.get(trail["url"] + "/verifier-key").text.strip()
    mine = next(d for d in docs if d["patient"] == alice and not d["decision"]["obligations"]["notify_after"])
    sealed = next(d for d in docs if d["patient"] == alice and (d["decision"]["obligations"]["notify_after"] or "")
                  > _iso(datetime.now(UTC)))
    bobs = next(d for d in docs if d["patient"] != alice)
    doc = _get(trail, f"/receipts/{mine['event_id']}", _patient(token, ALICE)).json()
    check = receipt.verify(doc, vkey)
    assert check.ok, check.problems
    assert check.event == mine
    assert _get(trail, f"/receipts/{bobs['event_id']}", _patient(token, ALICE)).status_code == 404
    assert _get(trail, f"/receipts/{sealed['event_id']}", _patient(token, ALICE)).status_code == 404
    assert _get(trail, f"/receipts/{sealed['event_id']}", _regulator(token)).status_code == 200
    assert _get(trail, f"/receipts/{mine['event_id']}", None).status_code == 401
    # Logged but not yet under a checkpoint: ask again later.
    late = event(patient=alice)
    svc.log.append([canonical_json(late)])
    assert _get(trail, f"/receipts/{late['event_id']}", _patient(token, ALICE)).status_code == 409


def test_entries_for_the_regulator_in_pages_or_one_stream(trail, token) -> None:  # type: ignore[no-untyped-def]
    bodies = [canonical_json(d) for d in trail["docs"]]
    page = _get(trail, "/entries", _regulator(token), start=5, end=9).json()
    assert [(r["index"], r["entry"]) for r in page] == [
        (i, __import__("base64").b64encode(bodies[i]).decode()) for i in range(5, 9)]
    with httpx.stream("GET", trail["url"] + "/entries/raw", headers=auth(_regulator(token))) as r:
        assert r.status_code == 200 and r.headers["x-tree-size"] == "40"
        assert list(wire.decode_entries(r.iter_bytes())) == list(enumerate(bodies))
    assert _get(trail, "/entries/raw", None).status_code == 401


def test_stats_count_what_the_log_holds(trail, token) -> None:  # type: ignore[no-untyped-def]
    docs = trail["docs"]
    stats = _get(trail, "/stats", _regulator(token)).json()
    assert stats["events"] == 40
    assert stats["by_kind"] == {k: sum(d["kind"] == k for d in docs) for k in {d["kind"] for d in docs}}
    assert stats["by_org_type"]["law_enforcement"] == sum(d["accessor"]["org_type"] == "law_enforcement" for d in docs)
    assert sum(stats["by_day"].values()) == 40
    assert stats["log"] == {"size": 40, "checkpoint": 40, "witnessed_checkpoint": None}


def test_the_checkpoint_verifies_with_the_published_key_only(trail) -> None:  # type: ignore[no-untyped-def]
    vkey = httpx.get(trail["url"] + "/verifier-key").text.strip()
    cp = httpx.get(trail["url"] + "/checkpoint").text
    opened = note.open_checkpoint(cp, vkey)
    assert opened.size == 40 and opened.origin == vkey.split("+")[0]
    _, other = note.generate_key(opened.origin)
    with pytest.raises(note.NoteError):
        note.open_checkpoint(cp, other)
    assert httpx.post(trail["url"] + "/cosignatures", content=cp.encode()).status_code == 400  # no cosignature
    witnesses = httpx.get(trail["url"] + "/witnesses").json()
    assert witnesses and all(note.new_verifier(w).alg == note.ALG_COSIGNATURE_V1 for w in witnesses)
    assert orjson.loads(httpx.get(trail["url"] + "/checkpoints").content)[0]["size"] == 40
