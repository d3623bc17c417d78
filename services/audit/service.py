"""The audit service's use cases, wired once from settings: the log, checkpoints, who may read.

Routes stay thin: they parse, call one function here and map errors to status
codes. Who may read the trail is OPA's decision (``audit_read``); this module
asks it and then scopes the query to what was allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from services.adapters import crypto
from services.adapters.auth import Caller, purpose_of_use
from services.adapters.keys import PlatformKeys
from services.adapters.policy import PolicyClient
from services.audit import query, store
from services.audit.checkpoints import Checkpointer, CheckpointStore
from services.audit.config import AuditSettings
from services.audit.log import MerkleLog
from services.audit.signing import LogSigner
from services.contracts import errors
from services.contracts.events import rfc3339, utcnow
from services.contracts.policy import Decision, PolicyInput, PolicyResource
from services.tlog import note, receipt


class Forbidden(errors.Forbidden):
    """OPA refused this read of the trail; ``reasons`` say why."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("audit trail read denied: " + ", ".join(reasons), reasons=reasons)


class NotFound(errors.NotFound):
    pass


class NotYetCheckpointed(errors.Conflict):
    """The event is logged but no signed checkpoint covers it yet (409: retry shortly)."""


def open_store(settings: AuditSettings, keys: PlatformKeys) -> Engine:
    """Connect as the writer role; in dev/test, first migrate with the owner's URL."""
    if settings.audit_database_url:
        return store.connect(settings.audit_database_url)
    owner = settings.owner_url
    if owner.startswith("postgresql"):
        password = keys.audit_db_password()
        store.migrate(owner, writer_role=settings.audit_db_role, writer_password=password)
        return store.connect(store.writer_url(owner, settings.audit_db_role, password))
    store.migrate(owner)
    return store.connect(owner)


def trusted_witnesses(settings: AuditSettings, keys: PlatformKeys) -> list[note.Verifier]:
    """The configured witness keys, plus the platform's demo witness in dev and test."""
    vkeys = list(settings.witness_keys)
    if settings.dev_mode:
        _, public = keys.witness_signer()
        kid = note.key_id(settings.witness_name, note.ALG_COSIGNATURE_V1, public)
        vkeys.append(note.Verifier(settings.witness_name, kid, note.ALG_COSIGNATURE_V1, public).vkey)
    return [note.new_verifier(v) for v in dict.fromkeys(vkeys)]


@dataclass
class AuditService:
    settings: AuditSettings
    keys: PlatformKeys
    engine: Engine
    log: MerkleLog
    checkpoints: CheckpointStore
    checkpointer: Checkpointer
    signer: LogSigner
    witnesses: list[note.Verifier]
    policy: PolicyClient

    @classmethod
    def build(cls, settings: AuditSettings) -> AuditService:
        keys = PlatformKeys(settings.state_dir)
        engine = open_store(settings, keys)
        log = MerkleLog(engine)
        checkpoints = CheckpointStore(engine)
        signer = LogSigner(settings.log_origin, *keys.audit_log_signer())
        return cls(settings=settings, keys=keys, engine=engine, log=log, checkpoints=checkpoints,
                   checkpointer=Checkpointer(log, checkpoints, signer), signer=signer,
                   witnesses=trusted_witnesses(settings, keys), policy=PolicyClient(settings.opa_url))

    # --- who may read what ---------------------------------------------------------------

    def pseudonym(self, patient_id: str) -> str:
        return crypto.pseudonym(self.keys.pseudonym_key(), patient_id)

    def authorise(self, caller: Caller, patient: str | None) -> Decision:
        """Ask OPA whether ``caller`` may read events about ``patient`` (a pseudonym; None: all)."""
        me = self.pseudonym(caller.patient) if caller.patient else None
        purpose = purpose_of_use(caller, default="PATRQT" if caller.org_type == "patient" else "HCOMPL")
        decision = self.policy.decide(PolicyInput(
            subject=caller.subject(me),
            action="audit_read", purpose=purpose,
            resource=PolicyResource(patient=patient, type="AuditEvent"), now=rfc3339(utcnow())))
        if not decision.allow:
            raise Forbidden(decision.reasons)
        return decision

    def scoped(self, caller: Caller, flt: query.EventFilter) -> query.EventFilter:
        """The filter the caller is allowed to run: a patient's is pinned to them and to what is unsealed."""
        if caller.org_type == "patient":
            mine = self.pseudonym(caller.patient or "")
            flt = query.EventFilter(**{**flt.__dict__, "patient": mine,
                                       "visible_at": rfc3339(utcnow())})
        self.authorise(caller, flt.patient)
        return flt

    # --- use cases -------------------------------------------------------------------------

    def events(self, caller: Caller, flt: query.EventFilter, cursor: int, limit: int) -> query.Page:
        return query.search(self.engine, self.scoped(caller, flt), cursor=cursor, limit=limit)

    def patient_trail(self, caller: Caller, flt: query.EventFilter, **paging: Any) -> query.TrailPage:
        """One patient's trail, newest first (a patient's is pinned to them and to what is unsealed)."""
        return query.patient_trail(self.engine, self.scoped(caller, flt), **paging)

    def stats(self, caller: Caller, flt: query.EventFilter) -> dict[str, Any]:
        return query.stats(self.engine, self.scoped(caller, flt))

    def entries_allowed(self, caller: Caller) -> None:
        """The raw entries name every patient and accessor: only who may read the whole trail."""
        self.authorise(caller, None)

    def receipt(self, caller: Caller, event_id: str) -> dict[str, Any]:
        row = self.log.by_event_id(event_id)
        if row is None:
            raise NotFound("no such event in the log (yet)")
        flt = self.scoped(caller, query.EventFilter(patient=row.patient))
        if query.find(self.engine, flt, event_id) is None:
            raise NotFound("no such event in the log (yet)")  # sealed for this caller: say nothing more
        cp = self.checkpoints.covering(int(row.idx))
        if cp is None:
            raise NotYetCheckpointed("the event is not yet covered by a signed checkpoint; retry shortly")
        return receipt.build(event_id=event_id, index=int(row.idx), entry=bytes(row.body),
                             proof=self.log.inclusion_proof(int(row.idx), cp.size),
                             checkpoint=self.checkpoints.published(cp), verifier_key=self.signer.verifier_key)
