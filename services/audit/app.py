"""Audit HTTP API: the transparency log of every disclosure (port 8003).

Public, because anyone holding the log's verifier key can check them and they
reveal nothing about anyone: checkpoints (with witness cosignatures), the
verifier and witness keys, inclusion and consistency proofs, and leaf hashes.
Everything that names a patient or an accessor — events, entries, receipts,
statistics — needs an authenticated caller that OPA allows to read the audit
trail (``trail.py``): a regulator for everything, a patient (through the
portal) for their own events, and then only once any seal on them has ended.
"""

from __future__ import annotations

import base64
import logging
import threading
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from services.adapters.kafka import ConsumerLoop, Producer, instance_id
from services.adapters.runtime import freeze_startup_heap
from services.adapters.telemetry import install_telemetry
from services.adapters.web import CallerDep, Int64Query, OptionalInt64Query, build_authenticator, install_error_handlers
from services.audit.checkpoints import accept_cosignature
from services.audit.config import AuditSettings
from services.audit.consumer import AuditHandler
from services.audit.service import AuditService
from services.audit.trail import router as trail_router
from services.contracts import errors
from services.contracts.topics import AUDIT_EVENTS
from services.tlog import wire

log = logging.getLogger(__name__)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def create_app(settings: AuditSettings | None = None) -> FastAPI:
    settings = settings or AuditSettings()
    svc = AuditService.build(settings)
    producer = Producer(settings.kafka_bootstrap, "healthgov-audit")
    handler = AuditHandler(svc.log, producer)
    consumer = ConsumerLoop(bootstrap=settings.kafka_bootstrap, topic=AUDIT_EVENTS,
                            group_id=settings.consumer_group, handler=handler, max_records=2000, instance=instance_id(),
                            # an append costs mostly per batch: let up to 50 ms of events gather
                            gather_ms=50)
    stop = threading.Event()

    def checkpoint_loop() -> None:
        while not stop.wait(settings.checkpoint_interval_s):
            try:
                svc.checkpointer.checkpoint()
                app.state.checkpoint_error = None
            except Exception as exc:  # keep trying; an inconsistent log is never signed
                log.error("checkpoint refused: %r", exc)
                app.state.checkpoint_error = repr(exc)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=checkpoint_loop, name="checkpoints", daemon=True)
        if settings.audit_consume:
            consumer.start()
            thread.start()
        yield
        stop.set()
        if settings.audit_consume:
            consumer.stop()
            thread.join(timeout=10)
        producer.close()
        svc.engine.dispose()

    app = FastAPI(title="healthgov audit", version="1.0", lifespan=lifespan)
    app.state.authenticator = build_authenticator(settings, "audit")
    app.state.audit = svc
    app.state.checkpoint_error = None
    install_error_handlers(app, fhir=False)
    app.include_router(trail_router)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        latest = svc.checkpoints.latest()
        return {"status": "ok", "consumer": consumer.healthy, "size": svc.log.size(),
                "checkpoint": latest.size if latest else None, "checkpoint_error": app.state.checkpoint_error,
                "appended": handler.appended, "dead_lettered": handler.dead_lettered}

    @app.get("/verifier-key", response_class=PlainTextResponse)
    def verifier_key() -> str:
        return svc.signer.verifier_key + "\n"

    @app.get("/witnesses")
    def witnesses() -> list[str]:
        """The witness keys whose cosignatures this log accepts and publishes."""
        return [w.vkey for w in svc.witnesses]

    @app.post("/checkpoint", response_class=PlainTextResponse)
    def make_checkpoint(caller: CallerDep) -> str:
        """Sign a checkpoint now (if the log grew since the last one) and return the latest.

        The log signs on its own schedule; signing on demand is for who oversees the whole log (OPA's
        ``audit_read`` of everything: the regulator), so nobody else can make the signer work.
        """
        svc.entries_allowed(caller)
        cp = svc.checkpointer.checkpoint()
        if cp is None:
            raise errors.NotFound("the log is empty")
        return svc.checkpoints.published(cp)

    @app.get("/checkpoint", response_class=PlainTextResponse)
    def checkpoint(witnessed: bool = False) -> str:
        """The latest checkpoint with its cosignatures (``witnessed``: the latest cosigned one)."""
        cp = svc.checkpoints.latest(witnessed=witnessed)
        if cp is None:
            raise errors.NotFound("no checkpoint yet")
        return svc.checkpoints.published(cp)

    @app.get("/checkpoints")
    def checkpoints(since_size: Int64Query = 0) -> list[dict[str, Any]]:
        cps = svc.checkpoints.all(since_size)
        lines = svc.checkpoints.cosignature_lines(c.size for c in cps)
        return [{"size": c.size, "root": _b64(c.root), "note": c.note + "".join(lines[c.size]),
                 "cosignatures": len(lines[c.size])} for c in cps]

    @app.post("/cosignatures", status_code=201)
    async def cosignatures(request: Request) -> dict[str, Any]:
        """A witness hands back a checkpoint it cosigned (the note with its signature line)."""
        body = (await request.body()).decode(errors="replace")
        return {"accepted": accept_cosignature(svc.checkpoints, svc.signer, svc.witnesses, body)}

    @app.get("/proofs/inclusion")
    def inclusion(size: Int64Query, index: OptionalInt64Query = None,
                  event_id: str | None = None) -> dict[str, Any]:
        if event_id is not None:
            entry = svc.log.by_event_id(event_id)
            if entry is None:
                raise errors.NotFound("no such event in the log")
            index = int(entry.idx)
        if index is None or not 0 <= index < size <= svc.log.size():
            raise errors.Invalid("need 0 <= index < size <= tree size")
        return {"index": index, "size": size, "leaf_hash": _b64(svc.log.leaf_hash(index)),
                "proof": [_b64(h) for h in svc.log.inclusion_proof(index, size)]}

    @app.get("/proofs/consistency")
    def consistency(first: Int64Query, second: Int64Query) -> dict[str, Any]:
        if not 0 <= first <= second <= svc.log.size():
            raise errors.Invalid("need 0 <= first <= second <= tree size")
        return {"first": first, "second": second,
                "proof": [_b64(h) for h in svc.log.consistency_proof(first, second)]}

    @app.get("/leaves")
    def leaves(start: Int64Query, end: Int64Query) -> StreamingResponse:
        """The stored leaf hashes of ``[start, end)``, 32 bytes each, back to back."""
        if end > svc.log.size() or start > end:
            raise errors.Invalid("need 0 <= start <= end <= tree size")
        return StreamingResponse(svc.log.iter_leaf_hashes(start, end), media_type=wire.MEDIA_TYPE)

    install_telemetry(app, "audit")
    freeze_startup_heap()
    return app
