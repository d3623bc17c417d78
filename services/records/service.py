"""Read use cases: every read is a policy decision and an audit event.

Order (docs/architecture.md §5): decide with OPA → apply the obligations → publish the
AuditEvent with acks=all through the disclosure gate → only then release the data. If the event cannot be
published nothing is released (``BrokerUnavailable`` → 503); if OPA cannot be
asked the answer is deny (403). Each distinct (type, labels, hospital) of the
rows read is one decision; rows the decision refuses or whose labels it
redacts are left out and counted, with the reason, in the response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, select

from services.adapters.auth import Caller
from services.adapters.policy import PolicyClient
from services.adapters.sql import UnitOfWork
from services.contracts.events import AuditKind, ResourceRef
from services.contracts.policy import Decision
from services.records import search
from services.records.access import (
    DIRECTORY_KEY,
    Asker,
    Authority,
    Denied,
    Facts,
    NotFound,
    load_facts,
)
from services.records.gate import Gate
from services.records.render import Released, render
from services.records.store import (
    ConsentRow,
    IdentifierIndex,
    Record,
    all_versions,
    consent_versions,
    latest_consents,
    latest_of_patient,
    latest_versions,
    newest_with_state,
)
from services.records.vault import Shredded, Vault

__all__ = ["DOWNLOAD_FORMATS", "Denied", "Disclosure", "NotFound", "ReadRequest", "Reader"]

# What a patient's copy of their record is taken away as (the ``format`` of a ``download`` event).
DOWNLOAD_FORMATS = ("fhir", "pdf")


@dataclass
class ReadRequest:
    """What an accessor asked for and under which authority."""

    rtype: str | None = None
    rid: str | None = None
    patient_id: str | None = None
    identifier: str | None = None  # "system|value" of a patient identifier
    authority: Authority = field(default_factory=Authority)
    directory: bool = False  # list shared directory data (Organization, Practitioner, ...)
    history: bool = False  # every version of rtype/rid
    version: int | None = None  # one version of rtype/rid (vread)
    filters: search.Filters = field(default_factory=search.Filters)
    # The patient takes a copy away as a file (``DOWNLOAD_FORMATS``): audited as a ``download`` of its own, which
    # the patient's trail lists, rather than as one more look at their own records, which it only counts.
    download: str | None = None

    @property
    def single(self) -> bool:
        """A read of one resource (not a search, not a history): answered with the resource itself."""
        return bool(self.rid) and not self.history


@dataclass
class Disclosure:
    """What may leave, and the audit event that was published before it."""

    body: bytes
    event_id: str
    withheld: int


@dataclass
class Located:
    """The rows of one read, decrypted, and the facts about their patient."""

    patient: str | None
    items: list[Released]
    asker: Asker
    unknown: str | None = None  # why the patient identifier asked for names no one patient


class UnknownPatient(NotFound):
    """The identifier asked for names nobody, or several; ``stand_in`` is a pseudonym that names nobody."""

    def __init__(self, stand_in: str, why: str) -> None:
        super().__init__(why)
        self.stand_in = stand_in
        self.why = why


@dataclass
class Reader:
    engine: Any
    vault: Vault
    policy: PolicyClient
    gate: Gate

    # --- locating rows ------------------------------------------------------------

    def _patient_for(self, s: Session, req: ReadRequest) -> str | None:
        if req.directory:
            return DIRECTORY_KEY
        if req.patient_id:
            return self.vault.pseudonym(req.patient_id)
        if req.identifier:
            system, _, value = req.identifier.rpartition("|")
            idx = self.vault.identifier_index(system, value)
            found = set(s.exec(select(IdentifierIndex.patient).where(IdentifierIndex.identifier_index == idx)).all())
            if len(found) != 1:
                raise UnknownPatient(self.vault.pseudonym(f"unknown-identifier|{idx}"),
                                     "that identifier names more than one patient; add its system (system|value)"
                                     if found else "no patient with that identifier")
            return found.pop()
        return None

    def _rows(self, s: Session, req: ReadRequest, patient: str | None) -> list[Record]:
        if req.rtype == "Consent":
            return []  # consents are read from the registry (``_consents``)
        if req.rid and req.rtype:
            rid = self.vault.rid_index(req.rtype, req.rid)
            if req.history:
                return all_versions(s, rid)
            if req.version is not None:
                return [r for r in all_versions(s, rid) if r.version == req.version]
            return list(latest_versions(s, [rid]).values())
        return latest_of_patient(s, patient, req.rtype)

    def _consent_rows(self, s: Session, req: ReadRequest, patient: str | None) -> list[ConsentRow]:
        if req.rtype == "Consent" and req.rid:
            rows = consent_versions(s, self.vault.consent_index(req.rid))
            if req.history:
                return rows
            if req.version is not None:
                return [r for r in rows if r.version == req.version]
            return rows[-1:]
        if patient and patient != DIRECTORY_KEY and req.rtype == "Consent":
            return latest_consents(s, patient)
        return []  # $everything is the clinical record; consents are listed by Consent?patient=

    def _consents(self, s: Session, req: ReadRequest, patient: str | None) -> list[Released]:
        """The patient's consents, from the registry (the only source the policy trusts)."""
        return [Released(rtype="Consent", version=r.version, hospital=None, labels=[],
                         resource=self.vault.open_consent(s, r), patient=r.patient)
                for r in self._consent_rows(s, req, patient)]

    def _newest(self, s: Session, caller: Caller, req: ReadRequest) -> tuple[list[Record], str | None, Facts]:
        """A read of one resource's current version: the row and its patient's state in one query."""
        assert req.rtype and req.rid
        found = newest_with_state(s, self.vault.rid_index(req.rtype, req.rid), caller.org)
        if found is None:
            raise NotFound(f"{req.rtype}/{req.rid} not found")
        row, key, care, has_consents = found
        return [row], row.patient, load_facts(s, self.vault, row.patient, caller.org,
                                              state=(key, care, has_consents))

    def locate(self, caller: Caller, req: ReadRequest) -> Located:
        """Find, decrypt and filter the rows; gather the facts. Raises ``Shredded`` after erasure."""
        with UnitOfWork(self.engine) as uow:
            s = uow.session
            if req.single and req.version is None and req.rtype != "Consent":
                rows, patient, facts = self._newest(s, caller, req)
            else:
                rows, patient, facts = self._find(s, caller, req)
            if facts.erased:
                self._gone(caller, req, Asker(self.policy, self.vault, caller, "read", req.authority, patient, facts))
                raise Shredded(patient)
            plains = [self.vault.open_row(s, r, facts.key) for r in rows]  # the key row read with the facts
            items = [Released(rtype=p.row.rtype, version=p.row.version, hospital=p.row.hospital,
                              labels=p.labels, resource=p.resource, patient=p.row.patient) for p in plains]
            items += self._consents(s, req, patient)
        items = [i for i in items if req.filters.empty or search.matches(i.resource, req.filters)]
        return Located(patient, items, Asker(self.policy, self.vault, caller, "read", req.authority, patient, facts),
                       unknown=facts.unknown)

    def _find(self, s: Session, caller: Caller, req: ReadRequest) -> tuple[list[Record], str | None, Facts]:
        """Every other read: the rows asked for, then their patient's state.

        An identifier that names nobody is not answered "not found" before the
        policy is asked: a caller without rights would learn who is a patient
        here. It is asked about a patient nobody is (``UnknownPatient``), and
        refused exactly as it would be for a real one it has no rights to.
        """
        try:
            patient = self._patient_for(s, req)
        except UnknownPatient as nobody:
            return [], nobody.stand_in, Facts(unknown=nobody.why)
        rows = self._rows(s, req, patient)
        if req.rtype == "Consent" and req.rid:
            patient = next((r.patient for r in self._consent_rows(s, req, patient)), None)
        if req.rid and not rows and not patient:
            raise NotFound(f"{req.rtype}/{req.rid}" + (f"/_history/{req.version}" if req.version else "")
                           + " not found")
        if rows:
            patient = rows[0].patient
        return rows, patient, load_facts(s, self.vault, patient, caller.org)

    def _gone(self, caller: Caller, req: ReadRequest, asker: Asker) -> None:
        """Tell an erased patient's records are gone only to a caller who could otherwise read them."""
        probe = asker.decide(req.rtype or "Patient", [], None)
        if not probe.allow:
            raise self._deny(caller, req, asker.patient, probe)

    # --- the read ---------------------------------------------------------------------

    def read(self, caller: Caller, req: ReadRequest) -> Disclosure:
        found = self.locate(caller, req)
        asker = found.asker
        asker.prefetch((i.rtype, i.labels, i.hospital) for i in found.items)
        released: list[tuple[Released, Decision]] = []
        withheld: dict[str, int] = {}
        for item in found.items:
            d = asker.decide(item.rtype, item.labels, item.hospital)
            if not d.allow:
                for r in d.reasons:
                    withheld[r] = withheld.get(r, 0) + 1
                continue
            hidden = sorted(set(item.labels) & set(d.obligations.redact_labels))
            if hidden:
                key = "redacted:" + ",".join(hidden)
                withheld[key] = withheld.get(key, 0) + 1
                continue
            released.append((item, d))
        if not found.items:
            probe = asker.decide(req.rtype or "Patient", [], None)
            if not probe.allow:
                raise self._deny(caller, req, found.patient, probe)
            if found.unknown:  # only a caller the policy would let read such a patient learns there is none
                raise NotFound(found.unknown)
            governing = probe
        elif not released:
            decisions = [asker.decide(i.rtype, i.labels, i.hospital) for i in found.items]
            refusal = next((d for d in decisions if not d.allow), None)
            if refusal is not None and (req.single or not any(k.startswith("redacted:") for k in withheld)):
                raise self._deny(caller, req, found.patient, refusal)
            governing = decisions[0]
            if req.single:  # the one resource asked for is withheld by its labels
                raise self._deny(caller, req, found.patient, governing, reasons=sorted(withheld))
        else:
            governing = released[0][1]
        body = render(req_kind(req), released, withheld,
                      pseudonym_for=lambda item: self._recipient_ids(caller, req, item))
        refs = [ResourceRef(type=i.rtype, id=i.ref_id(), version=str(i.version)) for i, _ in released]
        kind: AuditKind = "break_glass" if req.authority.purpose == "ETREAT" else "disclosure"
        details: dict[str, Any] = {"withheld": withheld} if withheld else {}
        if req.download:
            kind, details["format"] = "download", req.download
        event = self.gate.record(kind=kind, caller=caller, authority=req.authority, patient=found.patient,
                                 decision=governing, resources=refs, body=body,
                                 details=details or None)  # log before release
        return Disclosure(body=body, event_id=event.event_id, withheld=sum(withheld.values()))

    def _recipient_ids(self, caller: Caller, req: ReadRequest, item: Released) -> tuple[str | None, str]:
        """(the patient's FHIR id as the resource names it, the recipient's pseudonym for them)."""
        pseudo = self.vault.recipient_pseudonym(caller.org, item.patient)
        if item.rtype == "Patient":
            return str(item.resource.get("id")), pseudo
        if req.patient_id and self.vault.pseudonym(req.patient_id) == item.patient:
            return req.patient_id, pseudo
        for pid in sorted(item.referenced_patients()):
            if self.vault.pseudonym(pid) == item.patient:
                return pid, pseudo
        return None, pseudo

    def _deny(self, caller: Caller, req: ReadRequest, patient: str | None, d: Decision,
              reasons: list[str] | None = None) -> Denied:
        return self.gate.refuse(caller, req.authority, patient, d, reasons=reasons)


def req_kind(req: ReadRequest) -> str:
    """How the response is shaped: one resource, a history, or a search set."""
    if req.history:
        return "history"
    return "single" if req.single else "searchset"
