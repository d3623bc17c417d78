"""``healthgov dev admit``: a demo hospital sees its patients today.

Synthea's encounters are years old, and an old encounter is no evidence of
care (docs/architecture.md §10). A hospital that should be able to read its
demo patients' records sends what a real one would on the day the patient
walks in: a current Encounter (an outpatient visit under way). Its id is
derived from the hospital, the patient and the day, so admitting twice on one
day sends the same resource, stored once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer

from services.adapters.auth import issue_token
from services.adapters.config import PlatformSettings
from services.adapters.keys import PlatformKeys

_VISITS = uuid.UUID("a3f1c2d4-5b6e-4f70-8a9b-0c1d2e3f4a5b")


def visit(org: str, patient_id: str, now: datetime | None = None) -> dict[str, Any]:
    """An outpatient Encounter of ``patient_id`` at ``org``, under way since ``now``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "resourceType": "Encounter",
        "id": str(uuid.uuid5(_VISITS, f"{org}|{patient_id}|{moment.date().isoformat()}")),
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                  "display": "ambulatory"},
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003",
                              "display": "Encounter for check up"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": moment.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }


def patient_ids(paths: Iterable[Path]) -> list[str]:
    """The ids of the Patient resources in NDJSON(.gz) files or directories."""
    import gzip

    ids: list[str] = []
    for path in paths:
        files = sorted(path.glob("Patient*.ndjson*")) if path.is_dir() else [path]
        for f in files:
            raw = f.read_bytes()
            text = gzip.decompress(raw) if f.name.endswith(".gz") else raw
            ids += [doc["id"] for doc in map(orjson.loads, text.splitlines())
                    if doc.get("resourceType") == "Patient"]
    return ids


def admit(ingest_url: str, token: str, org: str, ids: list[str]) -> httpx.Response:
    """Send one batch Bundle with a current visit per patient."""
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"resource": visit(org, pid), "request": {"method": "PUT", "url": f"Encounter/{v}"}}
                        for pid in ids for v in [visit(org, pid)["id"]]]}
    return httpx.post(f"{ingest_url}/fhir", content=orjson.dumps(bundle), timeout=120,
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})


def admit_command(
    paths: Annotated[list[Path], typer.Argument(help="NDJSON files or directories holding the Patients.")],
    org: Annotated[str, typer.Option(help="The hospital the patients visit today.")],
) -> None:
    """Send a current outpatient visit for every patient in PATHS, as hospital ORG."""
    settings = PlatformSettings()
    private, _ = PlatformKeys(settings.state_dir).org_signer(org)
    token = issue_token(org=org, private_key=private, subject="healthgov-cli", audience="ingest", role="integration")
    ids = patient_ids(paths)
    resp = admit(settings.ingest_url, token, org, ids)
    if resp.status_code != 200:
        typer.echo(f"admission refused: {resp.status_code} {resp.text[:500]}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{org}: {len(ids)} patients have a visit under way")
