"""Populations for the analytics tests on the running platform: each test gets districts no one else uses."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests.conftest import wait_for
from tests.integration.records.support import SNOMED, bearer, condition, ingest

DIABETES = "44054006"
COUGH = "49727002"


def district() -> str:
    """A district name of this test alone, so that its counts are its own patients'."""
    return f"D{uuid.uuid4().hex[:10]}"


def person(district_name: str, *, gender: str = "female", birth: str = "1970-06-01") -> dict[str, Any]:
    pid = str(uuid.uuid4())
    return {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth,
            "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": pid}],
            "name": [{"family": f"Fam{pid[:6]}", "given": [f"Giv{pid[:6]}"]}],
            "address": [{"line": ["1 Test Road"], "city": "Guiyang", "district": district_name}]}


def populate(settings: Any, token: Any, district_name: str, n: int, *, codes: tuple[str, ...] = (DIABETES,),
             onset: str = "2024-03-15T09:00:00+08:00") -> list[str]:
    """``n`` patients in ``district_name``, each with one Condition per code; their ids (records has them)."""
    ids = []
    for _ in range(n):
        p = person(district_name)
        ingest(settings, token, p, *(condition(p["id"], code, onset) for code in codes))
        ids.append(p["id"])
    return ids


def public_health(token: Any) -> dict[str, str]:
    return bearer(token("gy-cdc", role="epidemiologist", purpose="PUBHLTH"))


def researcher(token: Any, **headers: str) -> dict[str, str]:
    return bearer(token("gz-uni-research", role="researcher", purpose="HRESCH"), **headers)


def cohort(districts: list[str], *, codes: tuple[str, ...] = (DIABETES,), **extra: Any) -> dict[str, Any]:
    return {"types": ["Condition"], "include": [{"system": SNOMED, "codes": list(codes)}], "districts": districts,
            **extra}


def ask(settings: Any, headers: dict[str, str], body: Any, *, busy_for_s: float = 120) -> httpx.Response:
    """Ask as a well-behaved client: a 503 (the store is being updated) is asked again after its Retry-After."""
    deadline = time.monotonic() + busy_for_s
    while True:
        r = httpx.post(f"{settings.records_url}/analytics/query", json=body, headers=headers, timeout=120)
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        time.sleep(float(r.headers.get("Retry-After", "5")))


def cases(settings: Any, token: Any, *groups: tuple[str, int, str, str, str]) -> list[str]:
    """Patients sent in one transaction, ``(district, n, system, code, onset)`` per group; waits for every one.

    Waiting for each Condition, not only the last: a partial population answered
    once would be released, and the full one would then differ from it by a few
    people, which disclosure control rightly withholds.
    """
    resources, conditions = [], []
    for district_name, n, system, code, onset in groups:
        for _ in range(n):
            p = person(district_name)
            c = condition(p["id"], code, onset)
            c["code"]["coding"][0]["system"] = system
            resources += [p, c]
            conditions.append(c["id"])
    ingest(settings, token, *resources)
    seen: dict[str, str] = {}

    def stored() -> bool:
        for cid in conditions:
            if seen.get(cid) != "200":
                got = httpx.get(f"{settings.records_url}/fhir/Condition/{cid}", timeout=30,
                                headers=bearer(token("gy-hosp-001", purpose="TREAT")))  # one token, one use
                seen[cid] = str(got.status_code) if got.status_code == 200 else f"{got.status_code} {got.text[:300]}"
        return all(v == "200" for v in seen.values())

    try:
        wait_for(stored, 120, "records to store every Condition sent")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {sorted(set(seen.values()))[:3]}") from exc
    return [r["id"] for r in resources if r["resourceType"] == "Patient"]


def notifiable(settings: Any, headers: dict[str, str], *, busy_for_s: float = 120, **params: str) -> httpx.Response:
    """Notifiable-disease counts, asked again after Retry-After while the store is being updated (as ``ask``)."""
    deadline = time.monotonic() + busy_for_s
    while True:
        r = httpx.get(f"{settings.records_url}/analytics/notifiable", params=params, headers=headers, timeout=120)
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        time.sleep(float(r.headers.get("Retry-After", "5")))
