"""Ingest HTTP API: the hospital-facing FHIR R4 and HL7 v2 front door (port 8001).

Routes stay thin: authenticate, rate-limit, read the body within the limits,
call one ``Ingestor``/``JobRunner`` use case and shape the FHIR answer. A
submission is acknowledged only after Kafka acknowledged every message.

- ``POST /fhir``: transaction (all-or-nothing) or batch (per entry) Bundle.
- ``POST /fhir/{type}``, ``PUT /fhir/{type}/{id}``: one resource.
- ``POST /fhir/$import``: NDJSON, per line; with ``Prefer: respond-async`` an
  asynchronous job (202 + ``Content-Location``), status at ``GET /jobs/{id}``.
- ``POST /hl7v2``: one ER7 message, answered with an ACK; the same over MLLP
  with mutual TLS when configured (``services/ingest/mllp.py``).
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from services.adapters.audit_log import AuditLog
from services.adapters.auth import load_registry
from services.adapters.kafka import Producer, instance_id
from services.adapters.keys import PlatformKeys
from services.adapters.policy import PolicyClient
from services.adapters.runtime import freeze_startup_heap
from services.adapters.telemetry import install_telemetry
from services.adapters.web import CallerDep, build_authenticator, install_error_handlers, json_body
from services.contracts import errors
from services.contracts.ids import RULE, is_fhir_id
from services.fhir import validation as fhir
from services.fhir.rules import rules as fhir_rules
from services.fhir.structure import structure as fhir_structure
from services.ingest import bundle as bundles
from services.ingest.body import read_body, split_lines
from services.ingest.claims import ClaimRegistry
from services.ingest.config import IngestSettings
from services.ingest.hl7_route import hl7_handler, install_hl7
from services.ingest.idempotency import Idempotency
from services.ingest.jobs import JobRunner
from services.ingest.mllp import MllpServer, tls_context
from services.ingest.prepare import Context
from services.ingest.ratelimit import RateLimiter
from services.ingest.service import Ingestor, body_digest
from services.ingest.store import make_engine
from services.ingest.validation import Pool

FHIR_JSON = "application/fhir+json"
# What each route reads; a request that declares another Content-Type is answered 415 (one that
# declares none is read as the route's own type, as the platform's own tools and tests send).
JSON_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir"})
NDJSON_TYPES = frozenset({"application/fhir+ndjson", "application/ndjson", "application/x-ndjson"})


class BulkJSONResponse(JSONResponse):
    """The same compact JSON as ``JSONResponse``, serialised by orjson.

    A batch-response names every line of an NDJSON request; the standard
    library's encoder spent more of ingest's own CPU on it than any other step.
    """

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def require_media_type(request: Request, accepted: frozenset[str]) -> None:
    """415 for a declared Content-Type this route does not read (parameters such as charset aside)."""
    declared = request.headers.get("content-type")
    if declared is None:
        return
    media = declared.split(";", 1)[0].strip().lower()
    if media not in accepted:
        raise errors.UnsupportedMediaType(f"Content-Type must be one of: {', '.join(sorted(accepted))}")


def _accepted(o: Any) -> dict[str, Any]:
    """An accepted NDJSON line's answer; its warnings (severity warning) as the entry's OperationOutcome."""
    out: dict[str, Any] = {"status": "201 Created", "location": f"{o.rtype}/{o.rid}"}
    if o.warnings:
        out["outcome"] = fhir.operation_outcome(o.warning_objects())
    return out


def _prefers_outcome(prefer: str | None) -> bool:
    return bool(prefer) and "return=operationoutcome" in (prefer or "").replace(" ", "").lower()


def _receipt_headers(receipt: Any) -> dict[str, str]:
    headers = {"X-Healthgov-Submission": receipt.submission_id, "X-Healthgov-Event-Id": receipt.event_id}
    if receipt.replay:
        headers["X-Healthgov-Replayed"] = "true"
    return headers


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    keys = PlatformKeys(settings.state_dir)
    engine = make_engine(settings.store_url)
    ctx = Context(records_public_key=keys.records_hpke_public(), pseudonym_key=keys.pseudonym_key(),
                  labels_file=str(settings.labels_file), message_resources=settings.message_resources,
                  strong_systems=frozenset(settings.strong_identifier_systems),
                  code_systems=fhir.RECOGNISED_CODE_SYSTEMS | frozenset(settings.recognised_code_systems),
                  priority=dict(settings.priority_fields))
    producer = Producer(settings.kafka_bootstrap, "healthgov-ingest", instance_id())
    pool = Pool(settings.validation_workers)
    ingestor = Ingestor(ctx=ctx, producer=producer, policy=PolicyClient(settings.opa_url), pool=pool,
                        idempotency=Idempotency(engine, keys.pseudonym_key(), stale_after_s=60),
                        claims=ClaimRegistry(engine),
                        pool_threshold=settings.pool_threshold, chunk_lines=settings.chunk_lines)
    runner = JobRunner(engine=engine, ingestor=ingestor, spool_key=keys.ingest_spool_key(),
                       chunk_lines=settings.chunk_lines, lease_s=settings.job_lease_s,
                       poll_s=settings.job_poll_s, max_errors=settings.job_max_errors)
    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)

    mllp = None
    if settings.mllp_cert and settings.mllp_key and settings.mllp_client_ca:
        mllp = MllpServer(host=settings.mllp_host, port=settings.mllp_port,
                          context=tls_context(str(settings.mllp_cert), str(settings.mllp_key),
                                              str(settings.mllp_client_ca)),
                          registry=load_registry(settings.registry_file), handle=hl7_handler(ingestor, settings))

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        # Off the start path: a broker that is down must not keep ingest from answering 503s.
        threading.Thread(target=producer.fence_predecessors, name="kafka-fence", daemon=True).start()
        await run_in_threadpool(fhir_structure)  # the structure table and the specification's rules, loaded
        await run_in_threadpool(fhir_rules)  # and compiled before the first request (ingest refuses without them)
        await run_in_threadpool(pool.warm_up)
        runner.start()
        if mllp is not None:
            await mllp.start()
        yield
        if mllp is not None:
            await mllp.stop()
        runner.stop()
        producer.close()
        pool.close()

    app = FastAPI(title="healthgov ingest", version="1.0", lifespan=lifespan)
    app.state.authenticator = build_authenticator(settings, "ingest")
    app.state.ingestor, app.state.runner, app.state.engine = ingestor, runner, engine
    app.state.audit_log = AuditLog(producer)
    install_error_handlers(app)

    async def body_of(request: Request, caller: Any, accepted: frozenset[str] | None = None) -> bytes:
        """The body of a caller that may write: throttled, authorised and typed before a byte is read."""
        limiter.take(caller.org)
        if accepted is not None:
            require_media_type(request, accepted)
        await run_in_threadpool(ingestor.authorise, caller)
        return await read_body(request, settings.max_body_bytes)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "validation_workers": pool.workers}

    @app.post("/fhir", openapi_extra=json_body())
    async def post_bundle(request: Request, caller: CallerDep,
                          idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        body = await body_of(request, caller, JSON_TYPES)
        return await submit_bundle(caller, fhir.parse_json(body), body, idempotency_key)

    async def submit_bundle(caller: Any, doc: Any, body: bytes, idempotency_key: str | None) -> JSONResponse:
        parsed = bundles.read_entries(doc, settings.max_bundle_entries)
        await run_in_threadpool(ingestor.check_bundle, parsed, caller.org)
        receipt = await run_in_threadpool(ingestor.submit_bundle, caller, parsed, body_digest(body),
                                          idempotency_key or parsed.identifier)
        return BulkJSONResponse(bundles.response(parsed, receipt.submission_id), media_type=FHIR_JSON,
                            headers=_receipt_headers(receipt))

    @app.post("/fhir/$import")
    async def post_ndjson(request: Request, caller: CallerDep, prefer: str | None = Header(default=None),
                          idempotency_key: str | None = Header(default=None)) -> Response:
        body = await body_of(request, caller, NDJSON_TYPES)
        lines = split_lines(body, settings.max_ndjson_lines)
        digest = body_digest(body)
        if prefer and "respond-async" in prefer.lower():
            job = await run_in_threadpool(runner.create, caller, lines, digest)
            url = f"{str(request.base_url).rstrip('/')}/jobs/{job.id}"
            return JSONResponse({"id": job.id, "status": job.state, "lines": job.lines}, status_code=202,
                                headers={"Content-Location": url, "X-Healthgov-Submission": job.id})
        receipt, outcomes = await run_in_threadpool(ingestor.submit_ndjson, caller, lines, digest, idempotency_key)
        entries = [{"response": _accepted(o)} if o.ok else
                   {"response": {"status": bundles.STATUS_LINES[o.status],
                                 "outcome": fhir.operation_outcome(o.issue_objects())}} for o in outcomes]
        return BulkJSONResponse({"resourceType": "Bundle", "type": "batch-response", "entry": entries},
                            media_type=FHIR_JSON, headers=_receipt_headers(receipt))

    @app.get("/jobs/{job_id}")
    async def job_status(job_id: str, caller: CallerDep) -> JSONResponse:
        status = await run_in_threadpool(runner.status, caller.org, job_id)
        if status is None:
            raise errors.NotFound("no such import job")
        running = status["status"] in ("accepted", "running")
        return JSONResponse(status, status_code=202 if running else 200,
                            headers={"X-Progress": f"{status['progress']}%"} if running else None)

    async def one_resource(request: Request, caller: Any, rtype: str, rid: str | None,
                           key: str | None) -> JSONResponse:
        """One resource, checked and stored as a transaction of one.

        Its warnings are answered with ``Prefer: return=OperationOutcome`` (the
        body is then the OperationOutcome) and counted in ``X-Healthgov-Warnings``
        either way, so a sender that reads only the resource still learns of them.
        A document Bundle is unpacked (``bundle.py``: ``read_entries``).
        """
        if rid is not None and not is_fhir_id(rid):
            raise fhir.InvalidSubmission([fhir.Issue(f"{rtype}.id: {RULE}", f"{rtype}.id", "value")])
        body = await body_of(request, caller, JSON_TYPES)
        doc = fhir.parse_json(body)
        if rtype == "Bundle" and rid is None and isinstance(doc, dict) and doc.get("type") == "document":
            return await submit_bundle(caller, doc, body, key)
        if isinstance(doc, dict) and doc.get("resourceType") not in (None, rtype):
            raise fhir.InvalidSubmission([fhir.Issue("resourceType does not match the URL type", "resourceType")])
        entry = {"resource": doc, "request": {"method": "PUT" if rid else "POST",
                                              "url": f"{rtype}/{rid}" if rid else rtype}}
        parsed = bundles.read_entries({"resourceType": "Bundle", "type": "transaction", "entry": [entry]}, 1)
        try:
            await run_in_threadpool(ingestor.check_bundle, parsed, caller.org)
        except fhir.InvalidSubmission as exc:  # name paths from the resource, not the wrapper Bundle
            for issue in exc.issues:
                issue.diagnostics = issue.diagnostics.replace("Bundle.entry[0].resource", rtype)
                issue.expression = (issue.expression or "").replace("Bundle.entry[0].resource", rtype) or None
            raise
        receipt = await run_in_threadpool(ingestor.submit_bundle, caller, parsed, body_digest(body), key)
        entry = parsed.entries[0]
        headers = {**_receipt_headers(receipt), "Location": entry.location}
        for w in entry.warnings:
            w.diagnostics = w.diagnostics.replace("Bundle.entry[0].resource", rtype)
            w.expression = (w.expression or "").replace("Bundle.entry[0].resource", rtype) or None
        if entry.warnings:
            headers["X-Healthgov-Warnings"] = str(len(entry.warnings))
        if _prefers_outcome(request.headers.get("prefer")):
            issues = entry.warnings or [fhir.Issue("stored", entry.location, "informational", "information")]
            return JSONResponse(fhir.operation_outcome(issues), status_code=200 if rid else 201,
                                media_type=FHIR_JSON, headers=headers)
        return JSONResponse(entry.resource, status_code=200 if rid else 201, media_type=FHIR_JSON,
                            headers=headers)

    @app.post("/fhir/{rtype}", openapi_extra=json_body())
    async def post_resource(rtype: str, request: Request, caller: CallerDep,
                            idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        return await one_resource(request, caller, rtype, None, idempotency_key)

    @app.put("/fhir/{rtype}/{rid}", openapi_extra=json_body())
    async def put_resource(rtype: str, rid: str, request: Request, caller: CallerDep,
                           idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        return await one_resource(request, caller, rtype, rid, idempotency_key)

    install_hl7(app, ingestor, settings, body_of)
    install_telemetry(app, "ingest")
    freeze_startup_heap()
    return app
