"""Read use cases: every read is a policy decision and an audit event.

Order (DESIGN §5): decide with OPA → apply the obligations → publish the
AuditEvent with acks=all → only then release the data. If the event cannot be
published nothing is released; if OPA cannot be asked the answer is deny.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlmodel import select

from services.adapters import crypto
from services.adapters.auth import Caller
from services.adapters.kafka import Message, Producer
from services.adapters.policy import PolicyClient
from services.contracts.events import Accessor, AuditDecision, AuditEvent, ResourceRef, rfc3339, utcnow
from services.contracts.policy import Decision, Legal, PolicyInput, PolicyResource, Relationship, Subject
from services.contracts.topics import AUDIT_EVENTS
from services.ingest.service import DIRECTORY_KEY
from services.records import deident
from services.records.store import CareLink, IdentifierIndex, Record, UnitOfWork, latest_versions
from services.records.vault import Plain, Vault


class Denied(Exception):
    def __init__(self, reasons: list[str], event_id: str) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons
        self.event_id = event_id


class NotFound(Exception):
    pass


@dataclass
class ReadRequest:
    """What an accessor asked for and under which authority."""

    rtype: str | None = None
    rid: str | None = None
    patient_id: str | None = None
    identifier: str | None = None  # "system|value"
    purpose: str = ""
    break_glass: dict[str, Any] | None = None
    legal: Legal = field(default_factory=Legal)
    request_id: str | None = None
    directory: bool = False  # list shared directory data (Organization, Practitioner, ...)


@dataclass
class Disclosure:
    body: bytes
    event_id: str
    withheld: int


@dataclass
class Reader:
    engine: Any
    vault: Vault
    policy: PolicyClient
    producer: Producer

    # --- locating rows ------------------------------------------------------------

    def _patient_for(self, s: Any, req: ReadRequest) -> str | None:
        if req.directory:
            return DIRECTORY_KEY
        if req.patient_id:
            return self.vault.pseudonym(req.patient_id)
        if req.identifier:
            system, _, value = req.identifier.rpartition("|")
            idx = self.vault.identifier_index(system, value)
            row = s.exec(select(IdentifierIndex).where(IdentifierIndex.identifier_index == idx)).first()
            if row is None:
                raise NotFound("no patient with that identifier")
            return row.patient
        return None

    def _rows(self, s: Any, req: ReadRequest, patient: str | None) -> list[Record]:
        if req.rid and req.rtype:
            rid = self.vault.rid_index(req.rtype, req.rid)
            return list(latest_versions(s, [rid]).values())
        query = select(Record).where(Record.patient == patient)
        if req.rtype:
            query = query.where(Record.rtype == req.rtype)
        rows = s.exec(query).all()
        return list(latest_versions(s, list({r.rid_index for r in rows})).values())

    # --- the read ---------------------------------------------------------------------

    def read(self, caller: Caller, req: ReadRequest) -> Disclosure:
        with UnitOfWork(self.engine) as uow:
            s = uow.session
            patient = self._patient_for(s, req)
            rows = self._rows(s, req, patient)
            if req.rid and not rows:
                raise NotFound(f"{req.rtype}/{req.rid} not found")
            if rows:
                patient = rows[0].patient
            plains = [self.vault.open_row(s, r) for r in rows]
            care = bool(patient) and s.exec(select(CareLink).where(
                CareLink.patient == patient, CareLink.hospital == caller.org)).first() is not None
        pol_patient = None if patient == DIRECTORY_KEY else patient
        base = dict(subject=Subject(id=caller.id, org=caller.org, org_type=caller.org_type,
                                    role=caller.role, patient=caller.patient and self.vault.pseudonym(caller.patient)),
                    action="read", purpose=req.purpose, relationship=Relationship(care=care),
                    consents=[], legal=req.legal, break_glass=req.break_glass, now=rfc3339(utcnow()))
        decisions: dict[tuple[str, tuple[str, ...], str | None], Decision] = {}

        def decide(rtype: str, labels: list[str], hospital: str | None) -> Decision:
            k = (rtype, tuple(labels), hospital)
            if k not in decisions:
                decisions[k] = self.policy.decide(PolicyInput(
                    **base, resource=PolicyResource(patient=pol_patient, type=rtype, labels=labels,
                                                    hospital=hospital)))
            return decisions[k]

        released: list[tuple[Plain, Decision]] = []
        withheld: dict[str, int] = {}
        if not plains:
            probe = decide(req.rtype or "Patient", [], None)
            if not probe.allow:
                raise self._deny(caller, req, pol_patient, probe)
        for p in plains:
            d = decide(p.row.rtype, p.labels, p.row.hospital)
            if not d.allow:
                for r in d.reasons:
                    withheld[r] = withheld.get(r, 0) + 1
                continue
            hidden = sorted(set(p.labels) & set(d.obligations.redact_labels))
            if hidden:
                key = "redacted:" + ",".join(hidden)
                withheld[key] = withheld.get(key, 0) + 1
                continue
            released.append((p, d))
        if plains and not released and not any(k.startswith("redacted:") for k in withheld):
            denial = next(d for d in decisions.values() if not d.allow)
            raise self._deny(caller, req, pol_patient, denial)
        governing = released[0][1] if released else next(iter(decisions.values()))
        body = self._render(caller, req, released, withheld, governing)
        event = self._event(caller, req, pol_patient, governing, released, body)
        self.producer.send(Message(AUDIT_EVENTS.name, event.canonical()))  # log before release
        return Disclosure(body=body, event_id=event.event_id, withheld=sum(withheld.values()))

    def _deny(self, caller: Caller, req: ReadRequest, patient: str | None, d: Decision) -> Denied:
        event = self._event(caller, req, patient, d, [], None)
        self.producer.send(Message(AUDIT_EVENTS.name, event.canonical()))
        return Denied(d.reasons, event.event_id)

    def _event(self, caller: Caller, req: ReadRequest, patient: str | None, d: Decision,
               released: list[tuple[Plain, Decision]], body: bytes | None) -> AuditEvent:
        kind = "denial" if not d.allow else ("break_glass" if req.purpose == "ETREAT" else "disclosure")
        refs = [ResourceRef(type=p.row.rtype,
                            id=patient if p.row.rtype == "Patient" and patient else str(p.resource.get("id")),
                            version=str(p.row.version)) for p, _ in released]
        legal = {k: v.get("id") for k, v in req.legal.model_dump().items() if v}
        return AuditEvent(
            kind=kind,
            accessor=Accessor(id=caller.id, org=caller.org, org_type=caller.org_type, role=caller.role),
            purpose=req.purpose, patient=patient, resources=refs,
            decision=AuditDecision(allow=d.allow, reasons=d.reasons,
                                   obligations=d.obligations.model_dump(), policy_version=d.policy_version),
            legal=legal, request_id=req.request_id,
            data_digest=crypto.sha256_hex(body) if body is not None else None,
            details={"break_glass_reason": (req.break_glass or {}).get("reason")} if req.break_glass else {},
        )

    def _render(self, caller: Caller, req: ReadRequest, released: list[tuple[Plain, Decision]],
                withheld: dict[str, int], d: Decision) -> bytes:
        mode = d.obligations.deidentify
        if req.rid and released and mode in ("none",):
            return orjson.dumps(released[0][0].resource)
        if mode == "aggregate_only":
            counts: dict[str, int] = {}
            for p, _ in released:
                counts[p.row.rtype] = counts.get(p.row.rtype, 0) + 1
            return orjson.dumps({"resourceType": "Parameters", "parameter": [
                {"name": t, "valueInteger": n} for t, n in sorted(counts.items())]})
        entries = []
        for p, dec in released:
            res = p.resource
            if dec.obligations.deidentify in ("pseudonymize", "safe_harbor") and req.patient_id is not None:
                pseudo = deident.recipient_pseudonym(self.vault.pseudonym_key, caller.org, req.patient_id)
                fn = deident.pseudonymize if dec.obligations.deidentify == "pseudonymize" else deident.safe_harbor
                res = fn(res, req.patient_id, pseudo)
            elif dec.obligations.deidentify in ("pseudonymize", "safe_harbor"):
                fn = deident.pseudonymize if dec.obligations.deidentify == "pseudonymize" else deident.safe_harbor
                res = fn(res, None, None)
            entries.append({"resource": res})
        if req.rid and entries:
            return orjson.dumps(entries[0]["resource"])
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                                  "entry": entries}
        if withheld:
            bundle["meta"] = {"extension": [{"url": "https://healthgov.example/withheld",
                                             "extension": [{"url": reason, "valueInteger": n}
                                                           for reason, n in sorted(withheld.items())]}]}
        return orjson.dumps(bundle)
