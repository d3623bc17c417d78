"""``healthgov dev oversight-demo``: several hospitals that report differently, for the regulator to see.

From the shipped Synthea patients, each demo hospital sends its own copy (ids,
references and identifiers re-derived per hospital, so each registers its own
patients) as a hospital information system would send its daily feed: each
record's clinical time moved to a recent moment, so the lag the regulator
measures is the hospital's. The hospitals differ as real ones do:

- ``gy-hosp-002`` reports within hours and codes well;
- ``gy-hosp-003`` reports days to weeks late;
- ``gy-hosp-004`` codes poorly (local code systems instead of SNOMED CT, LOINC,
  RxNorm, CVX; unknown genders; no encounter reasons);
- ``gy-hosp-005`` sends a burst of submissions most of whose records are refused.

Then some access behaviour for the anomaly rules and the review queue:
break-glass accesses, one record read again and again within seconds, a
clinician probing patients of another hospital. ``gy-hosp-001`` is loaded by
``make run`` itself (the Synthea history, years old).
"""

from __future__ import annotations

import gzip
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import orjson
import typer

from services.adapters.auth import issue_token
from services.adapters.config import REPO_ROOT, PlatformSettings
from services.adapters.keys import PlatformKeys
from services.cli import visits
from services.ingest.report import RECOGNISED_SYSTEMS, clinical_time

FIXTURES = REPO_ROOT / "deploy" / "demo" / "fixtures" / "synthea-10-patients"
TYPES = ("Patient", "Encounter", "Condition", "Immunization", "Procedure", "MedicationRequest", "AllergyIntolerance")
_NS = uuid.UUID("5d0f3c1e-2b7a-4c8e-9f10-6a2b3c4d5e6f")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r'"(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))?"')


@dataclass(frozen=True)
class Profile:
    """How one demo hospital reports."""

    lag_hours: tuple[float, float]  # records arrive this long after their clinical time
    per_type: int = 60  # records of each type in its feed
    poor_coding: float = 0.0  # share of recognised codings replaced by the hospital's local codes
    refused_batches: int = 0  # submissions of mostly invalid records


PROFILES: dict[str, Profile] = {
    "gy-hosp-002": Profile(lag_hours=(1, 12)),
    "gy-hosp-003": Profile(lag_hours=(72, 480)),
    "gy-hosp-004": Profile(lag_hours=(2, 20), poor_coding=0.7),
    "gy-hosp-005": Profile(lag_hours=(3, 30), per_type=30, refused_batches=5),
}


def _lines(rtype: str) -> list[bytes]:
    path = FIXTURES / f"{rtype}.000.ndjson.gz"
    return [ln for ln in gzip.decompress(path.read_bytes()).splitlines() if ln.strip()]


def reidentify(org: str, raw: bytes, ids: set[str]) -> bytes:
    """The hospital's own copy: every id of the feed (and each reference to it) re-derived for ``org``."""
    return _UUID.sub(lambda m: str(uuid.uuid5(_NS, f"{org}|{m.group(0)}")) if m.group(0) in ids else m.group(0),
                     raw.decode()).encode()


def _shift(text: str, by: timedelta) -> str:
    def moved(m: re.Match[str]) -> str:
        if m.group(2) is None:
            return '"' + (datetime.fromisoformat(m.group(1)) + timedelta(days=by.days)).date().isoformat() + '"'
        moment = datetime.fromisoformat((m.group(1) + m.group(2)).replace("Z", "+00:00")) + by
        return '"' + moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + '"'

    return _TIME.sub(moved, text)


def recent(doc: dict[str, Any], lag_h: float, now: datetime) -> dict[str, Any]:
    """The record as a daily feed sends it: its clinical time ``lag_h`` hours ago, its other times with it."""
    moment = clinical_time(doc)
    if moment is None or doc.get("resourceType") == "Patient":
        return doc
    return orjson.loads(_shift(orjson.dumps(doc).decode(), now - timedelta(hours=lag_h) - moment))


def poorly_coded(doc: dict[str, Any], org: str, share: float, rnd: random.Random) -> dict[str, Any]:
    """Recognised codings replaced by the hospital's local code system; unknown genders; no reasons."""
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("system") in RECOGNISED_SYSTEMS and "code" in node and rnd.random() < share:
                node["system"] = f"http://his.{org}.example/codes"
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    if doc.get("resourceType") == "Patient" and rnd.random() < 0.4:
        doc["gender"] = "unknown"
    doc.pop("reasonCode", None)
    return doc


def refused_feed(org: str, patients: list[str], n: int) -> list[bytes]:
    """A broken interface's output: observations without codes, encounters with malformed periods, bad JSON."""
    out: list[bytes] = []
    for i in range(n):
        pid = patients[i % len(patients)]
        kind = i % 4
        if kind == 0:
            doc: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                                   "subject": {"reference": f"Patient/{pid}"}}
        elif kind == 1:
            doc = {"resourceType": "Encounter", "status": "finished", "subject": {"reference": f"Patient/{pid}"},
                   "class": {"code": "AMB"}, "period": "yesterday"}
        elif kind == 2:
            doc = {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"}, "onsetDateTime": "soon"}
        else:
            out.append(b'{"resourceType": "Observation", "status": ')
            continue
        out.append(orjson.dumps(doc))
    return out


def _post_ndjson(client: httpx.Client, token: Callable[[], str], lines: list[bytes]) -> tuple[int, int]:
    r = client.post("/fhir/$import", content=b"\n".join(lines),
                    headers={"Authorization": f"Bearer {token()}", "Content-Type": "application/fhir+ndjson"})
    if r.status_code not in (200, 400):
        raise RuntimeError(f"ingest answered {r.status_code}: {r.text[:300]}")
    entries = r.json().get("entry", []) if r.status_code == 200 else []
    ok = sum(1 for e in entries if e["response"]["status"].startswith("201"))
    return ok, len(lines) - ok


def feed(org: str, profile: Profile, now: datetime, rnd: random.Random) -> tuple[dict[str, list[bytes]], list[str]]:
    """The hospital's NDJSON per type (Patients first) and its patients' ids."""
    chosen = {t: _lines(t)[: (None if t == "Patient" else profile.per_type)] for t in TYPES}
    ids = {orjson.loads(ln)["id"] for lines in chosen.values() for ln in lines}
    out: dict[str, list[bytes]] = {}
    patients: list[str] = []
    for rtype, lines in chosen.items():
        docs = [orjson.loads(reidentify(org, ln, ids)) for ln in lines]
        for doc in docs:
            if rtype == "Patient":
                patients.append(doc["id"])
                for ident in doc.get("identifier", []):
                    if "value" in ident:
                        ident["value"] = uuid.uuid5(_NS, f"{org}|{ident['value']}").hex[:16]
        docs = [recent(d, rnd.uniform(*profile.lag_hours), now) for d in docs]
        if profile.poor_coding:
            docs = [poorly_coded(d, org, profile.poor_coding, rnd) for d in docs]
        out[rtype] = [orjson.dumps(d) for d in docs]
    return out, patients


def _read(client: httpx.Client, token: str, path: str, **headers: str) -> int:
    return client.get(path, headers={"Authorization": f"Bearer {token}", **headers}).status_code


def behave(settings: PlatformSettings, keys: PlatformKeys, patients: dict[str, list[str]]) -> None:
    """Access behaviour the rules and the review queue catch."""
    def tok(org: str, sub: str, purpose: str = "TREAT") -> str:
        private, _ = keys.org_signer(org)
        return issue_token(org=org, private_key=private, subject=sub, audience="records", role="clinician",
                           purpose=purpose)

    with httpx.Client(base_url=settings.records_url, timeout=60) as c:
        mine = patients["gy-hosp-002"]
        for _ in range(7):  # one record again and again within seconds
            _read(c, tok("gy-hosp-002", "dr-liu"), f"/fhir/Patient/{mine[0]}")
        for pid in mine[:4]:  # break-glass, more than any peer
            _read(c, tok("gy-hosp-003", "dr-zhou", "ETREAT"), f"/fhir/Patient/{pid}",
                  **{"X-Break-Glass-Reason": "patient unconscious in the emergency department"})
        _read(c, tok("gy-hosp-004", "dr-ma", "ETREAT"), f"/fhir/Patient/{mine[5]}",
              **{"X-Break-Glass-Reason": "transferred unconscious"})
        for pid in mine[:7]:  # probing another hospital's patients, without a care relationship
            _read(c, tok("gy-hosp-004", "dr-sun"), f"/fhir/Patient/{pid}")


def demo_command(
    seed: Annotated[int, typer.Option(help="Random seed (lags, which codes are spoiled).")] = 7,
) -> None:
    """Load the demo patients through four more hospitals, each reporting differently, then some access."""
    settings = PlatformSettings()
    keys = PlatformKeys(settings.state_dir)
    rnd = random.Random(seed)  # noqa: S311 - demo data, reproducible on purpose
    now = datetime.now(UTC)
    patients: dict[str, list[str]] = {}
    with httpx.Client(base_url=settings.ingest_url, timeout=300) as client:
        for org, profile in PROFILES.items():
            private, _ = keys.org_signer(org)

            def token(org: str = org, private: bytes = private) -> str:
                return issue_token(org=org, private_key=private, subject="his", audience="ingest", role="integration")

            lines, patients[org] = feed(org, profile, now, rnd)
            accepted = refused = 0
            for rtype in TYPES:
                ok, bad = _post_ndjson(client, token, lines[rtype])
                accepted, refused = accepted + ok, refused + bad
            for _ in range(profile.refused_batches):
                ok, bad = _post_ndjson(client, token, refused_feed(org, patients[org], 40))
                accepted, refused = accepted + ok, refused + bad
            r = visits.admit(settings.ingest_url, token(), org, patients[org])
            if r.status_code != 200:
                raise typer.Exit(f"{org}: admission refused: {r.status_code}")
            typer.echo(f"{org}: {accepted} records accepted, {refused} refused "
                       f"(lag {profile.lag_hours[0]:g}-{profile.lag_hours[1]:g} h"
                       f"{', poor coding' if profile.poor_coding else ''})")
    behave(settings, keys, patients)
    typer.echo("access: repeated reads (gy-hosp-002/dr-liu), break-glass (gy-hosp-003/dr-zhou, gy-hosp-004/dr-ma), "
               "probing without care (gy-hosp-004/dr-sun)")


__all__ = ["PROFILES", "demo_command", "feed", "recent", "reidentify"]
