"""One record set through the whole platform on the real Kafka, OPA and PostgreSQL."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx

from services.adapters.config import PlatformSettings
from tests.conftest import auth, clinician_counts
from tests.integration.records.support import phi_needles

BASE64_TABLES = ("audit_checkpoint", "audit_cosignature", "portal_account")


def test_every_fixture_resource_comes_back_to_a_clinician(loaded: dict[str, Any], token, settings) -> None:
    counts = clinician_counts(token, settings, loaded["patient_ids"])
    assert counts == loaded["expected"]
    assert sum(counts.values()) == 7160 + len(loaded["patient_ids"])  # the fixtures and today's visits
    print(f"\n10-patient set: acked in {loaded['acked_s']:.1f}s, stored and readable in "
          f"{loaded['stored_s']:.1f}s = {loaded['rate']:.0f} resources/s end to end")


def test_no_plaintext_phi_on_the_broker_or_in_the_database(loaded, ten_patients, settings: PlatformSettings) -> None:
    # Kafka carries base64 ciphertext: short base64-alphabet needles are searched JSON-quoted.
    needles = phi_needles(ten_patients, beside_base64=True)
    assert len(needles) > 50
    segments = list(Path(settings.state_dir, "kafka", "data").rglob("*.log"))
    assert segments, "no Kafka log segments found"
    broker = b"".join(p.read_bytes() for p in segments)
    assert len(broker) > 1_000_000  # the data really went through Kafka
    leaked = sorted(n.decode() for n in needles if n in broker)
    assert not leaked, f"plaintext PHI in Kafka segments: {leaked[:5]}"

    assert settings.database_url and settings.database_url.startswith("postgresql")
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    # Binary columns dump as hex, keys and pseudonyms are hex digests: no base64 text, so every
    # needle is searched for bare. Only these tables hold base64 text (checkpoint notes, witness
    # signatures, argon2id hashes); they are searched as Kafka is.
    with_base64 = [f"--table={t}" for t in BASE64_TABLES]
    rest = subprocess.run(["pg_dump", "--data-only", *(f"--exclude-table-data={t}" for t in BASE64_TABLES), url],
                          capture_output=True, check=True).stdout
    assert b"records_resource" in rest and len(rest) > 1_000_000
    assert not [t for t in BASE64_TABLES if f"COPY public.{t} ".encode() in rest]
    everything = phi_needles(ten_patients, beside_base64=False)
    leaked = sorted(n.decode() for n in everything if n in rest)
    assert not leaked, f"plaintext PHI in the database dump: {leaked[:5]}"
    base64_part = subprocess.run(["pg_dump", "--data-only", *with_base64, url], capture_output=True, check=True).stdout
    assert b"COPY public.audit_checkpoint " in base64_part
    leaked = sorted(n.decode() for n in needles if n in base64_part)
    assert not leaked, f"plaintext PHI in the database dump: {leaked[:5]}"


def test_a_patient_cannot_read_another_patients_records(loaded, token, settings) -> None:
    me, other = loaded["patient_ids"][0], loaded["patient_ids"][1]
    with httpx.Client(base_url=settings.records_url, timeout=30) as c:
        mine = c.get(f"/fhir/Patient/{me}/$everything",
                     headers=auth(token("healthgov-portal", role="patient", patient=me, purpose="PATRQT")))
        assert mine.status_code == 200, mine.text
        assert mine.json()["total"] > 0
        theirs = c.get(f"/fhir/Patient/{other}/$everything",
                       headers=auth(token("healthgov-portal", role="patient", patient=me, purpose="PATRQT")))
        assert theirs.status_code == 403
        assert "entry" not in theirs.json()
        one = c.get(f"/fhir/Patient/{other}",
                    headers=auth(token("healthgov-portal", role="patient", patient=me, purpose="PATRQT")))
        assert one.status_code == 403
        # Only the portal may assert a patient claim.
        forged = c.get(f"/fhir/Patient/{other}/$everything",
                       headers=auth(token("gy-hosp-002", role="patient", patient=other, purpose="PATRQT")))
        assert forged.status_code == 403
