"""Shared fixtures: the running platform, demo-org tokens and the demo data.

Integration and end-to-end tests talk to the real Kafka, OPA, PostgreSQL and
services that ``make test`` started. If the platform is not up they fail (never
skip): a component that does not start is a failure.
"""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.adapters.auth import issue_token
from services.adapters.config import REPO_ROOT, PlatformSettings
from services.adapters.documents import ETHICS_APPROVAL, WARRANT, issue_document
from services.adapters.keys import PlatformKeys
from services.cli import visits
from services.cli.ingest import patients_first

FIXTURES = REPO_ROOT / "deploy" / "demo" / "fixtures"
TEN = FIXTURES / "synthea-10-patients"
DIRECTORY_TYPES = {"Organization", "Location", "Practitioner", "PractitionerRole"}


def load_ndjson(directory: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in sorted(directory.glob("*.ndjson.gz")):
        out.extend(json.loads(line) for line in gzip.decompress(f.read_bytes()).splitlines() if line.strip())
    return out


@pytest.fixture(scope="session")
def settings() -> PlatformSettings:
    return PlatformSettings()


@pytest.fixture(scope="session")
def keys(settings: PlatformSettings) -> PlatformKeys:
    return PlatformKeys(settings.state_dir)


TokenFactory = Callable[..., str]


@pytest.fixture(scope="session")
def token(keys: PlatformKeys) -> TokenFactory:
    """Mint a token as a demo organisation: ``token(org, aud, role=..., purpose=...)``."""

    def make(org: str, aud: str = "records", *, sub: str = "user-1", role: str = "clinician",
             patient: str | None = None, purpose: str | None = None, ttl_s: int = 120,
             **extra: Any) -> str:
        private, _ = keys.org_signer(org)
        return issue_token(org=org, private_key=private, subject=sub, audience=aud, role=role,
                           patient=patient, purpose=purpose, ttl_s=ttl_s, extra=extra or None)

    return make


class Documents:
    """Signs demo warrants and ethics approvals as a registered court or ethics board (or anyone else)."""

    def __init__(self, keys: PlatformKeys) -> None:
        self.keys = keys

    def warrant(self, patient: str, *, to: str = "gy-police", court: str = "gy-intermediate-court",
                days: float = 5, signer: str | None = None, **claims: Any) -> str:
        """A warrant by ``court`` for ``to``; ``signer`` signs in the court's name with another org's key."""
        private, _ = self.keys.org_signer(signer or court)
        return issue_document(WARRANT, issuer=court, private_key=private, to=to, days=days,
                              claims={"patient": patient, "labels": [], **claims})

    def ethics_approval(self, *, to: str = "gz-uni-research", board: str = "gz-med-univ-irb",
                        project: str = "cohort", days: float = 30, **claims: Any) -> str:
        private, _ = self.keys.org_signer(board)
        return issue_document(ETHICS_APPROVAL, issuer=board, private_key=private, to=to, days=days,
                              claims={"project": project, **claims})


@pytest.fixture(scope="session")
def documents(keys: PlatformKeys) -> Documents:
    """Signed legal documents: ``documents.warrant(patient, ...)``, ``documents.ethics_approval(...)``."""
    return Documents(keys)


def auth(tok: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}", **headers}


@pytest.fixture(scope="session")
def stack():  # type: ignore[no-untyped-def]
    """The running platform; fails loudly if any component is down."""
    from services.cli.stack import Stack

    s = Stack()
    status = s.status()
    down = [n for n, i in status.items() if not i["healthy"]]
    assert not down, f"platform components not running: {down} (start with `healthgov stack up`)"
    return s


@pytest.fixture(scope="session")
def ten_patients() -> list[dict[str, Any]]:
    return load_ndjson(TEN)


def first_patient() -> dict[str, Any]:
    """The first Patient of the 10-patient set, as a hospital would send it."""
    return json.loads(gzip.decompress((TEN / "Patient.000.ndjson.gz").read_bytes()).splitlines()[0])


def wait_for(predicate: Callable[[], bool], timeout_s: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def clinician_counts(token: TokenFactory, settings: PlatformSettings, patient_ids: list[str],
                     org: str = "gy-hosp-001") -> Counter[str]:
    """Per-type counts a clinician of ``org`` reads back for these patients and the directory."""
    counts: Counter[str] = Counter()
    with httpx.Client(base_url=settings.records_url, timeout=60) as c:
        for pid in patient_ids:
            r = c.get(f"/fhir/Patient/{pid}/$everything",
                      headers=auth(token(org, purpose="TREAT")))
            assert r.status_code == 200, r.text
            counts.update(e["resource"]["resourceType"] for e in r.json()["entry"])
        for rtype in sorted(DIRECTORY_TYPES):
            r = c.get(f"/fhir/{rtype}", headers=auth(token(org, purpose="TREAT")))
            assert r.status_code == 200, r.text
            counts.update(e["resource"]["resourceType"] for e in r.json()["entry"])
    return counts


@pytest.fixture(scope="session")
def loaded(stack, token: TokenFactory, settings: PlatformSettings,  # type: ignore[no-untyped-def]
           ten_patients: list[dict[str, Any]]) -> dict[str, Any]:
    """The 10-patient set sent through the ingest API by gy-hosp-001 and stored by records."""
    started = time.perf_counter()
    with httpx.Client(base_url=settings.ingest_url, timeout=300) as c:
        for f in sorted(TEN.glob("*.ndjson.gz"), key=lambda f: patients_first(f.name)):
            r = c.post("/fhir/$import", content=gzip.decompress(f.read_bytes()),
                       headers=auth(token("gy-hosp-001", "ingest", role="integration"),
                                    **{"Content-Type": "application/fhir+ndjson"}))
            assert r.status_code == 200, r.text
    acked = time.perf_counter() - started
    patient_ids = [r["id"] for r in ten_patients if r["resourceType"] == "Patient"]
    # The fixtures' encounters ended years ago: no evidence of care. Today's visits are.
    r = visits.admit(settings.ingest_url, token("gy-hosp-001", "ingest", role="integration"), "gy-hosp-001",
                     patient_ids)
    assert r.status_code == 200, r.text
    expected = Counter(r["resourceType"] for r in ten_patients) + Counter({"Encounter": len(patient_ids)})
    seen: dict[str, Counter[str]] = {}

    def in_care() -> bool:
        with httpx.Client(base_url=settings.records_url, timeout=60) as c:
            return all(c.get(f"/fhir/Patient/{pid}", headers=auth(token("gy-hosp-001", purpose="TREAT"))
                             ).status_code == 200 for pid in patient_ids)

    def all_stored() -> bool:
        seen["counts"] = clinician_counts(token, settings, patient_ids)
        return seen["counts"] == expected

    wait_for(in_care, 180, "today's visits to give gy-hosp-001 care of its patients")

    wait_for(all_stored, 180, "records to store every ingested resource")
    stored = time.perf_counter() - started
    return {"expected": expected, "patient_ids": patient_ids, "acked_s": acked, "stored_s": stored,
            "rate": len(ten_patients) / stored}


# --- what the services logged while a failing test ran --------------------------------------------------------

_SERVICE_LOG_LINES = 15  # per service, in a failure's report
_log_sizes: dict[str, int] = {}


def _service_logs() -> list[Path]:
    return sorted((PlatformSettings().state_dir / "logs").glob("*.log"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Remember how long each service's log was, so a failure can show what was written during the test."""
    if "stack" in getattr(item, "fixturenames", ()):
        _log_sizes.clear()
        _log_sizes.update({p.name: p.stat().st_size for p in _service_logs()})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A failed platform test's report ends with the warnings and errors each service logged meanwhile.

    A failure on the running platform is often the service's, not the test's (a timeout says only that
    nothing came back); this puts the service's own account in the report CI prints.
    """
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or "stack" not in getattr(item, "fixturenames", ()):
        return
    for path in _service_logs():
        with path.open("rb") as fh:
            fh.seek(_log_sizes.get(path.name, 0))
            fresh = fh.read(4 * 1024 * 1024).decode(errors="replace").splitlines()
        notable = [line[:400] for line in fresh if '"level":"INFO"' not in line and '"level":"DEBUG"' not in line
                   and line.strip()]
        if notable:
            report.sections.append((f"{path.stem} logged during the test (last {_SERVICE_LOG_LINES})",
                                    "\n".join(notable[-_SERVICE_LOG_LINES:])))
