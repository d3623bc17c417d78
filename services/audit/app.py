"""Audit HTTP API: the transparency log of every disclosure (port 8003).

Checkpoints, entries and proofs are public: anyone holding the log's verifier
key can check them, which is the point. Event queries name who looked at whom,
so they need a caller that OPA allows to read the audit trail: a regulator for
everything, a patient (through the portal) for their own events.
"""

from __future__ import annotations

import base64
import threading
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import PlainTextResponse, Response
from sqlmodel import Session, select

from services.adapters import crypto
from services.adapters.kafka import ConsumerLoop
from services.adapters.keys import PlatformKeys
from services.adapters.policy import PolicyClient
from services.adapters.web import CallerDep, build_authenticator, install_error_handlers
from services.audit.config import AuditSettings
from services.audit.consumer import AuditHandler
from services.audit.log import MerkleLog
from services.audit.signing import LogSigner
from services.audit.store import Cosignature, Entry, make_engine
from services.contracts.events import rfc3339, utcnow
from services.contracts.policy import PolicyInput, PolicyResource, Subject
from services.contracts.topics import AUDIT_EVENTS


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def create_app(settings: AuditSettings | None = None) -> FastAPI:
    settings = settings or AuditSettings()
    keys = PlatformKeys(settings.state_dir)
    engine = make_engine(settings.store_url)
    log = MerkleLog(engine)
    signer = LogSigner(settings.log_origin, *keys.audit_log_signer())
    policy = PolicyClient(settings.opa_url)
    handler = AuditHandler(log)
    consumer = ConsumerLoop(bootstrap=settings.kafka_bootstrap, topic=AUDIT_EVENTS,
                            group_id=settings.consumer_group, handler=handler, max_records=2000)
    stop = threading.Event()

    def checkpoint_loop() -> None:
        while not stop.wait(settings.checkpoint_interval_s):
            try:
                log.checkpoint(signer.sign)
            except Exception as exc:  # keep trying; an inconsistent log is never signed
                app.state.checkpoint_error = repr(exc)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        consumer.start()
        thread = threading.Thread(target=checkpoint_loop, name="checkpoints", daemon=True)
        thread.start()
        yield
        stop.set()
        consumer.stop()

    app = FastAPI(title="healthgov audit", version="1.0", lifespan=lifespan)
    app.state.authenticator = build_authenticator(settings, "audit")
    app.state.checkpoint_error = None
    install_error_handlers(app, fhir=False)

    def authorise(caller: Any, patient: str | None) -> None:
        """Ask OPA whether ``caller`` may read events about ``patient`` (a pseudonym, or all)."""
        purpose = "PATRQT" if caller.org_type == "patient" else (caller.purpose or "HCOMPL")
        me = crypto.pseudonym(keys.pseudonym_key(), caller.patient) if caller.patient else None
        decision = policy.decide(PolicyInput(
            subject=Subject(id=caller.id, org=caller.org, org_type=caller.org_type, role=caller.role,
                            patient=me),
            action="audit_read", purpose=purpose,
            resource=PolicyResource(patient=patient, type="AuditEvent"), now=rfc3339(utcnow())))
        if not decision.allow:
            raise HTTPException(403, detail={"reasons": decision.reasons})

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "consumer": consumer.healthy, "size": log.size(),
                "checkpoint_error": app.state.checkpoint_error}

    @app.get("/verifier-key", response_class=PlainTextResponse)
    def verifier_key() -> str:
        return signer.verifier_key + "\n"

    @app.post("/checkpoint", response_class=PlainTextResponse)
    def make_checkpoint() -> str:
        cp = log.checkpoint(signer.sign)
        if cp is None:
            raise HTTPException(404, "the log is empty")
        return cp.note

    @app.get("/checkpoint", response_class=PlainTextResponse)
    def checkpoint() -> str:
        cp = log.latest_checkpoint()
        if cp is None:
            raise HTTPException(404, "no checkpoint yet")
        with Session(engine) as s:
            lines = [c.line for c in s.exec(select(Cosignature).where(Cosignature.size == cp.size)).all()]
        return cp.note + "".join(f"{line}\n" for line in lines)

    @app.get("/checkpoints")
    def checkpoints() -> list[dict[str, Any]]:
        from services.audit.store import Checkpoint

        with Session(engine) as s:
            rows = s.exec(select(Checkpoint).order_by(Checkpoint.size)).all()  # type: ignore[arg-type]
            return [{"size": c.size, "root": _b64(c.root), "note": c.note} for c in rows]

    @app.get("/entries")
    def entries(start: Annotated[int, Query(ge=0)], end: Annotated[int, Query(gt=0)]) -> Response:
        if end - start > 10_000:
            raise HTTPException(400, "at most 10000 entries per request")
        rows = log.entries(start, end)
        body = orjson.dumps([{"index": e.idx, "entry": _b64(e.body)} for e in rows])
        return Response(body, media_type="application/json")

    @app.get("/proofs/inclusion")
    def inclusion(size: int, index: int | None = None, event_id: str | None = None) -> dict[str, Any]:
        if event_id is not None:
            entry = log.by_event_id(event_id)
            if entry is None:
                raise HTTPException(404, "no such event in the log")
            index = entry.idx
        if index is None or not 0 <= index < size <= log.size():
            raise HTTPException(400, "need 0 <= index < size <= tree size")
        return {"index": index, "size": size, "leaf_hash": _b64(log.leaf_hash(index)),
                "proof": [_b64(h) for h in log.inclusion_proof(index, size)]}

    @app.get("/proofs/consistency")
    def consistency(first: int, second: int) -> dict[str, Any]:
        if not 0 <= first <= second <= log.size():
            raise HTTPException(400, "need 0 <= first <= second <= tree size")
        return {"first": first, "second": second,
                "proof": [_b64(h) for h in log.consistency_proof(first, second)]}

    @app.get("/receipts/{event_id}")
    def receipt(event_id: str) -> dict[str, Any]:
        entry = log.by_event_id(event_id)
        cp = log.latest_checkpoint()
        if entry is None:
            raise HTTPException(404, "no such event in the log (yet)")
        if cp is None or cp.size <= entry.idx:
            raise HTTPException(409, "the event is not yet covered by a checkpoint; retry shortly")
        return {"event_id": event_id, "index": entry.idx, "entry": _b64(entry.body),
                "checkpoint": cp.note, "verifier_key": signer.verifier_key,
                "proof": [_b64(h) for h in log.inclusion_proof(entry.idx, cp.size)]}

    @app.get("/events")
    def events(caller: CallerDep, patient: str | None = None, accessor_org: str | None = None,
               org_type: str | None = None, purpose: str | None = None, kind: str | None = None,
               outcome: str | None = None, since: str | None = None, until: str | None = None,
               cursor: Annotated[int, Query(ge=0)] = 0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        if caller.org_type == "patient":
            patient = crypto.pseudonym(keys.pseudonym_key(), caller.patient or "")
        authorise(caller, patient)
        q = select(Entry).where(Entry.idx >= cursor)
        for column, value in ((Entry.patient, patient), (Entry.accessor_org, accessor_org),
                              (Entry.accessor_org_type, org_type), (Entry.purpose, purpose),
                              (Entry.kind, kind), (Entry.outcome, outcome)):
            if value is not None:
                q = q.where(column == value)
        if since:
            q = q.where(Entry.occurred_at >= since)
        if until:
            q = q.where(Entry.occurred_at < until)
        with Session(engine) as s:
            rows = s.exec(q.order_by(Entry.idx).limit(limit + 1)).all()  # type: ignore[arg-type]
        page = rows[:limit]
        return {"events": [{"index": e.idx, **orjson.loads(e.body)} for e in page],
                "next_cursor": rows[limit].idx if len(rows) > limit else None}

    return app
