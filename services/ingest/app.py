"""Ingest HTTP API: the hospital-facing FHIR R4 front door (port 8001).

Routes stay thin: authenticate, parse, authorise the write with OPA, call
``service.submit`` and shape the FHIR response. A submission is acknowledged
only after Kafka acknowledged every message.
"""

from __future__ import annotations

import gzip
import threading
from collections import OrderedDict
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from services.adapters.auth import Caller
from services.adapters.kafka import Producer
from services.adapters.keys import PlatformKeys
from services.adapters.policy import PolicyClient
from services.adapters.web import CallerDep, build_authenticator, install_error_handlers
from services.contracts.events import rfc3339, utcnow
from services.contracts.policy import PolicyInput, PolicyResource, Subject
from services.ingest import fhir
from services.ingest.config import IngestSettings
from services.ingest.labels import load_table
from services.ingest.service import Receipt, Sealer, submit

FHIR_JSON = "application/fhir+json"


class IdempotencyCache:
    """Answers a repeated submission (same key from the same hospital) the same way."""

    def __init__(self, size: int = 10_000) -> None:
        self._items: OrderedDict[tuple[str, str], tuple[int, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def get(self, org: str, key: str | None) -> tuple[int, dict[str, Any]] | None:
        if not key:
            return None
        with self._lock:
            return self._items.get((org, key))

    def put(self, org: str, key: str | None, status: int, body: dict[str, Any]) -> None:
        if not key:
            return
        with self._lock:
            self._items[(org, key)] = (status, body)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    keys = PlatformKeys(settings.state_dir)
    app = FastAPI(title="healthgov ingest", version="1.0")
    app.state.authenticator = build_authenticator(settings, "ingest")
    sealer = Sealer(records_public_key=keys.records_hpke_public(),
                    pseudonym_key=keys.pseudonym_key(), labels=load_table(settings.labels_file))
    producer = Producer(settings.kafka_bootstrap, "healthgov-ingest")
    policy = PolicyClient(settings.opa_url)
    seen = IdempotencyCache()
    install_error_handlers(app)

    def outcome(status: int, issues: list[fhir.Issue]) -> JSONResponse:
        return JSONResponse(fhir.operation_outcome(issues), status_code=status, media_type=FHIR_JSON)

    def authorise_write(caller: Caller) -> JSONResponse | None:
        decision = policy.decide(PolicyInput(
            subject=Subject(id=caller.id, org=caller.org, org_type=caller.org_type, role=caller.role),
            action="write", purpose="TREAT",
            resource=PolicyResource(patient=None, type="Bundle", hospital=caller.org),
            now=rfc3339(utcnow()),
        ))
        if decision.allow:
            return None
        return outcome(403, [fhir.Issue("write denied: " + ", ".join(decision.reasons),
                                        code="forbidden")])

    async def read_body(request: Request) -> bytes:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if len(body) > settings.max_body_bytes:
            raise fhir.InvalidSubmission(
                [fhir.Issue(f"request of {len(body)} bytes exceeds {settings.max_body_bytes}",
                            "body", "too-costly")], status=413)
        return body

    def accept(caller: Caller, sub: fhir.Submission, key: str | None) -> JSONResponse:
        if (cached := seen.get(caller.org, key)) is not None:
            return JSONResponse(cached[1], status_code=cached[0], media_type=FHIR_JSON)
        if (denied := authorise_write(caller)) is not None:
            return denied
        receipt = submit(caller=caller, submission=sub, sealer=sealer, producer=producer)
        body = response_bundle(sub, receipt)
        seen.put(caller.org, key, 200, body)
        return JSONResponse(body, status_code=200, media_type=FHIR_JSON,
                            headers={"X-Healthgov-Submission": receipt.submission_id,
                                     "X-Healthgov-Event-Id": receipt.event_id})

    @app.exception_handler(fhir.InvalidSubmission)
    async def _invalid(_request: Request, exc: fhir.InvalidSubmission) -> JSONResponse:
        headers = {"Retry-After": "60"} if exc.status == 429 else {}
        return JSONResponse(fhir.operation_outcome(exc.issues), status_code=exc.status,
                            media_type=FHIR_JSON, headers=headers)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/fhir")
    async def post_bundle(request: Request, caller: CallerDep,
                          idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        body = await read_body(request)
        sub = fhir.parse_bundle(fhir.parse_json(body), settings.max_entries)
        return await _in_thread(accept, caller, sub, idempotency_key or sub.identifier)

    @app.post("/fhir/$import")
    async def post_ndjson(request: Request, caller: CallerDep,
                          idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        body = await read_body(request)
        sub = await _in_thread(fhir.parse_ndjson, body, settings.max_entries)
        return await _in_thread(accept, caller, sub, idempotency_key)

    @app.post("/fhir/{rtype}")
    async def post_resource(rtype: str, request: Request, caller: CallerDep,
                            idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        doc = fhir.parse_json(await read_body(request))
        issues = fhir.validate_resource(doc, rtype)
        if not issues and doc.get("resourceType") != rtype:
            issues = [fhir.Issue(f"resourceType {doc.get('resourceType')!r} does not match the URL "
                                 f"type {rtype!r}", "resourceType")]
        if issues:
            return outcome(400, issues)
        sub = fhir.Submission(kind="resource", resources=[doc])
        return await _in_thread(accept, caller, sub, idempotency_key)

    @app.on_event("shutdown")
    def _close() -> None:
        producer.close()

    return app


async def _in_thread(fn: Any, *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


def response_bundle(sub: fhir.Submission, receipt: Receipt) -> dict[str, Any]:
    """A transaction-response / batch-response Bundle, one entry per resource."""
    rtype = "transaction-response" if sub.kind == "transaction" else "batch-response"
    return {
        "resourceType": "Bundle",
        "type": rtype,
        "meta": {"tag": [{"system": "https://healthgov.example/submission",
                          "code": receipt.submission_id}]},
        "entry": [
            {"response": {"status": "201 Created",
                          "location": f"{r['resourceType']}/{r.get('id', '')}"}}
            for r in sub.resources
        ],
    }
