"""Who may write what: resources are owned, and a hospital writes only about its own patients.

Two rules, checked for every resource before it is sealed and published, so
that a refusal is a synchronous 403 and not a silent drop later:

- **Ownership.** The first hospital to send ``Type/id`` owns it; only the owner
  may send new versions, and never under another patient. (A hospital that
  knows another hospital's resource id cannot overwrite it, nor move it.)
- **Registration.** A hospital attaches records only to a patient it knows:
  one it registered itself (it sent that Patient resource), or one it
  identifies by a strong identifier value that the platform matches (the
  deployment's national identifier systems, ``IngestSettings.strong_identifier_systems``;
  in the Synthea demo data the US SSN plays that role), given on the
  resource's patient reference as ``{"reference": "Patient/<id>",
  "identifier": {"system": ..., "value": ...}}``. Knowing a platform id is not
  a capability.

Ingest keeps the facts itself, in its own tables, because it must answer in
order and at once: a Patient accepted in one request is known to the next,
before records has stored anything. Nothing here is PHI: resource ids,
patient ids and identifier values are held only as keyed digests (the same
keyed pseudonym that keys the patient's Kafka messages).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from services.adapters import crypto
from services.adapters.sql import UNIT_SEPARATOR, KeyLookup, UnitOfWork, joined
from services.fhir.compartment import PATIENT_ELEMENTS
from services.fhir.validation import Issue
from services.ingest.store import IngestClaim, IngestIdentifier, IngestRegistration

DIRECTORY = "directory"

NOT_OWNER = "not_resource_owner"
MOVED = "resource_moves_patient"
NOT_REGISTERED = "patient_not_registered_by_hospital"
REASON_TEXT = {
    NOT_OWNER: "another organisation sent this resource first; only its author may update it",
    MOVED: "an update cannot move a resource to another patient",
    NOT_REGISTERED: ("this hospital has not registered the patient: send the patient's Patient resource first, "
                     "or identify the patient on the reference by a national identifier (reference.identifier)"),
}


@dataclass(frozen=True)
class Claim:
    """What one resource asserts: its identity, its patient, and how it knows the patient (keyed digests)."""

    index: int  # entry index or line number
    rid_key: str
    patient_key: str  # DIRECTORY for data about no patient
    registers: bool = False  # the resource is that patient's Patient
    identifiers: tuple[str, ...] = ()  # strong identifier digests it carries for its patient


def _digest(key: bytes, *parts: str) -> str:
    return crypto.keyed_digest(key, "ingest-claim", *parts)


def identifier_key(key: bytes, system: str, value: str) -> str:
    return _digest(key, "identifier", system, value)


def _strong(key: bytes, identifiers: Any, systems: frozenset[str]) -> tuple[str, ...]:
    if isinstance(identifiers, dict):
        identifiers = [identifiers]
    if not isinstance(identifiers, list):
        return ()
    return tuple(sorted({identifier_key(key, i["system"], i["value"]) for i in identifiers
                         if isinstance(i, dict) and i.get("system") in systems
                         and isinstance(i.get("value"), str) and i["value"]}))


def claim_of(resource: dict[str, Any], index: int, *, key: bytes, patient_key: str, systems: frozenset[str]) -> Claim:
    """The claim a validated resource makes (``patient_key``: its patient's pseudonym, or DIRECTORY)."""
    rtype, rid = str(resource.get("resourceType")), str(resource.get("id"))
    if rtype == "Patient":
        return Claim(index, _digest(key, "rid", rtype, rid), patient_key, registers=True,
                     identifiers=_strong(key, resource.get("identifier"), systems))
    strong: tuple[str, ...] = ()
    for element in PATIENT_ELEMENTS:
        ref = resource.get(element)
        if isinstance(ref, dict) and ref.get("identifier"):
            strong = _strong(key, ref.get("identifier"), systems)
            break
    return Claim(index, _digest(key, "rid", rtype, rid), patient_key, identifiers=strong)


@dataclass
class Refusals:
    """Claims refused, by index, with the reason; and the issue to report for each."""

    reasons: dict[int, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.reasons)

    def issue(self, index: int, where: str) -> Issue:
        reason = self.reasons[index]
        return Issue(f"{where}: {REASON_TEXT[reason]}", where, "forbidden")

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.reasons.values()))


def _insert(engine_or_conn: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = engine_or_conn.dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(table).on_conflict_do_nothing()
    engine_or_conn.execute(stmt, rows)


_OWNERS = KeyLookup(IngestClaim.rid_key, IngestClaim.hospital, IngestClaim.patient_key, key=IngestClaim.rid_key)
_REGISTERED = KeyLookup(IngestRegistration.patient_key, IngestRegistration.hospital, key=IngestRegistration.patient_key)
_NAMED = KeyLookup(IngestIdentifier.identifier_key, IngestIdentifier.patient_key, key=IngestIdentifier.identifier_key)
# New claims in one statement; it answers the keys it did not insert (a rival took them a moment earlier)
# as one joined text: usually empty, so no row per claim comes back (see adapters/sql.joined).
_CLAIM_PG = text(
    "WITH ins AS (INSERT INTO ingest_claim (rid_key, hospital, patient_key, created_at) "
    "SELECT k, :hospital, p, now() "
    "FROM unnest(string_to_array(:keys, :sep), string_to_array(:patients, :sep)) AS t(k, p) "
    "ON CONFLICT DO NOTHING RETURNING rid_key) "
    "SELECT string_agg(k, :sep) FROM unnest(string_to_array(:keys, :sep)) AS k "
    "WHERE k NOT IN (SELECT rid_key FROM ins)")


def _claim(conn: Any, hospital: str, rows: list[dict[str, Any]]) -> set[str]:
    """Insert new claims; return the keys this insert lost (a rival may have taken one meanwhile)."""
    if not rows:
        return set()
    keys = joined([r["rid_key"] for r in rows])
    patients = joined([r["patient_key"] for r in rows])
    if conn.dialect.name == "postgresql" and keys is not None and patients is not None:
        lost = conn.execute(_CLAIM_PG, {"hospital": hospital, "keys": keys, "patients": patients,
                                        "sep": UNIT_SEPARATOR}).scalar()
        return set(lost.split(UNIT_SEPARATOR)) if lost else set()
    _insert(conn, IngestClaim.__table__, rows)  # type: ignore[attr-defined]
    won = {r.rid_key for r in _OWNERS.rows(conn, [r["rid_key"] for r in rows]) if r.hospital == hospital}
    return {r["rid_key"] for r in rows} - won


class ClaimRegistry:
    """Settles a submission's claims against what earlier submissions established."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def settle(self, hospital: str, claims: Iterable[Claim], all_or_nothing: bool = False) -> Refusals:
        """Refuse what breaks ownership or registration; record the rest. One transaction.

        ``all_or_nothing`` (a Bundle, a single resource): one refusal records nothing.
        """
        claims = list(claims)
        refused = Refusals()
        if not claims:
            return refused
        with UnitOfWork(self.engine) as uow:
            conn = uow.session.connection()
            owners = {r.rid_key: (r.hospital, r.patient_key)
                      for r in _OWNERS.rows(conn, sorted({c.rid_key for c in claims}))}
            patients = sorted({c.patient_key for c in claims if c.patient_key != DIRECTORY})
            registered = {r.patient_key for r in _REGISTERED.rows(conn, patients) if r.hospital == hospital}
            named = {r.identifier_key: r.patient_key
                     for r in _NAMED.rows(conn, sorted({k for c in claims for k in c.identifiers}))}
            new_claims: dict[str, dict[str, Any]] = {}
            new_regs: dict[str, str] = {}
            new_idents: dict[str, str] = {}
            # Patients first: a Patient and its records may come in one submission, in any order.
            for c in sorted(claims, key=lambda c: not c.registers):
                owner = owners.get(c.rid_key) or ((hospital, new_claims[c.rid_key]["patient_key"])
                                                  if c.rid_key in new_claims else None)
                if owner is not None and owner[0] != hospital:
                    refused.reasons[c.index] = NOT_OWNER
                    continue
                if owner is not None and owner[1] != c.patient_key:
                    refused.reasons[c.index] = MOVED
                    continue
                if c.registers:
                    registered.add(c.patient_key)
                    new_regs.setdefault(c.patient_key, "patient")
                    for k in c.identifiers:
                        if named.setdefault(k, c.patient_key) == c.patient_key:
                            new_idents.setdefault(k, c.patient_key)
                elif c.patient_key != DIRECTORY and c.patient_key not in registered:
                    if any(named.get(k) == c.patient_key for k in c.identifiers):
                        registered.add(c.patient_key)
                        new_regs.setdefault(c.patient_key, "identifier")
                    else:
                        refused.reasons[c.index] = NOT_REGISTERED
                        continue
                if c.rid_key not in owners:
                    new_claims.setdefault(c.rid_key, {"rid_key": c.rid_key, "hospital": hospital,
                                                      "patient_key": c.patient_key})
            lost = _claim(conn, hospital, list(new_claims.values()))
            _insert(conn, IngestRegistration.__table__, [  # type: ignore[attr-defined]
                {"patient_key": p, "hospital": hospital, "via": via} for p, via in new_regs.items()])
            _insert(conn, IngestIdentifier.__table__, [  # type: ignore[attr-defined]
                {"identifier_key": k, "patient_key": p} for k, p in new_idents.items()])
            if lost:  # a rival submission claimed the same new id a moment earlier
                rivals = {r.rid_key: (r.hospital, r.patient_key) for r in _OWNERS.rows(conn, sorted(lost))}
                for c in claims:
                    if c.rid_key in lost and c.index not in refused.reasons and \
                            rivals.get(c.rid_key) != (hospital, c.patient_key):
                        refused.reasons[c.index] = NOT_OWNER
            if not (refused and all_or_nothing):
                uow.commit()
        return refused
