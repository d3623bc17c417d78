"""A Bulk Data client healthgov did not write exports under a data-use project.

``smart-fetch`` (SMART on FHIR's Bulk Data client, from PyPI) authenticates
with SMART Backend Services (``.well-known/smart-configuration``, a
``client_credentials`` grant with a ``private_key_jwt`` assertion signed by the
research organisation's registered Ed25519 key), kicks off
``Group/{project}/$export``, polls, and downloads the NDJSON files, reusing its
access token throughout. What it receives is the governed, de-identified output.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import first_patient
from tests.e2e.test_research_export import RESEARCH, apply, review
from tests.integration.records.support import HYPERTENSION, SNOMED, condition, fresh_patient, ingest, phi_needles

SMART_FETCH = Path(sys.executable).with_name("smart-fetch")


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwks_of(keys, org: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The organisation's signing key as the JWKS file a SMART client is configured with."""
    private, public = keys.org_signer(org)
    return {"keys": [{"kty": "OKP", "crv": "Ed25519", "d": b64url(private), "x": b64url(public), "alg": "EdDSA",
                      "kid": f"{org}-1", "key_ops": ["sign"]}]}


def smart_fetch(settings, tmp_path: Path, jwks: dict[str, Any], group: str, *extra: str,  # type: ignore[no-untyped-def]
                client: str = RESEARCH) -> subprocess.CompletedProcess[str]:
    key = tmp_path / "org.jwks"  # smart-fetch tells a JWKS from a PEM by the file name
    key.write_text(json.dumps(jwks))
    return subprocess.run(
        [str(SMART_FETCH), "bulk", "--fhir-url", f"{settings.records_url}/fhir", "--group", group,
         "--smart-client-id", client, "--smart-key", str(key), "--type", "Patient,Condition",
         "--no-default-filters", "--no-compression", *extra, str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def project(loaded, settings, token, documents) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    created = apply(settings, token, documents, types=["Condition", "Patient"], cohort={})
    assert review(settings, token, created["id"], "approve").status_code == 200
    return created


def test_smart_fetch_exports_the_governed_de_identified_output(project, loaded, ten_patients, settings, keys,  # type: ignore[no-untyped-def]
                                                               tmp_path: Path) -> None:
    assert SMART_FETCH.exists(), "smart-fetch is a dev dependency (pyproject.toml)"
    run = smart_fetch(settings, tmp_path, jwks_of(keys, RESEARCH), project["id"])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    files = sorted(f for f in (tmp_path / "out").glob("*.ndjson") if f.name != "log.ndjson")  # its own log
    assert {f.name.split(".")[0] for f in files} == {"Condition", "Patient"}, files
    lines = [line for f in files for line in f.read_bytes().splitlines() if line]
    patients = [orjson.loads(x) for x in lines if b'"resourceType":"Patient"' in x]
    assert len(patients) >= len(loaded["patient_ids"])
    assert all(p["id"].startswith("rp-") and "name" not in p for p in patients)
    needles = phi_needles([x for x in ten_patients if x["resourceType"] == "Patient"], beside_base64=False)
    leaked = sorted({n.decode() for n in needles for line in lines if n in line})
    assert not leaked, f"identifying data in the export: {leaked[:5]}"


def test_smart_fetch_type_filters_narrow_the_export(project, settings, token, keys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The client's own ``--type-filter`` reaches the server as ``_typeFilter`` and is honoured, not ignored."""
    patient = fresh_patient(first_patient())
    wanted, other = condition(patient["id"], HYPERTENSION, "2020-01-01"), condition(patient["id"], "44054006",
                                                                                      "2020-01-01")
    ingest(settings, token, patient, wanted, other)
    run = smart_fetch(settings, tmp_path, jwks_of(keys, RESEARCH), project["id"],
                      "--type-filter", f"Condition?code={SNOMED}|{HYPERTENSION}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    conditions = [orjson.loads(line) for f in (tmp_path / "out").glob("Condition*.ndjson")
                  for line in f.read_bytes().splitlines() if line]
    ids = {c["id"] for c in conditions}
    assert wanted["id"] in ids and other["id"] not in ids
    assert all({(c.get("system"), c.get("code")) for c in r["code"]["coding"]} & {(SNOMED, HYPERTENSION)}
               for r in conditions)


def test_smart_fetch_is_refused_with_a_key_that_is_not_the_organisations(project, settings, keys,  # type: ignore[no-untyped-def]
                                                                         tmp_path: Path) -> None:
    """The client id says research, the key is the insurer's: no token, no export."""
    run = smart_fetch(settings, tmp_path, jwks_of(keys, "gz-insurer-1"), project["id"])
    assert run.returncode != 0
    assert not list((tmp_path / "out").glob("*.ndjson"))
