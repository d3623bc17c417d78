"""Populations for the analytics tests on the running platform: each test gets districts no one else uses."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

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
