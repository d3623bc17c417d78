"""Records HTTP API: the policy-enforced, audited FHIR read API (port 8002).

The app also runs the ``ingest.resources.v1`` consumer in a background thread.
Every data-bearing response carries ``X-Healthgov-Event-Id``: the audit event
that was published before the data left.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from services.adapters.kafka import ConsumerLoop, Producer
from services.adapters.keys import PlatformKeys
from services.adapters.policy import PolicyClient
from services.adapters.web import CallerDep, build_authenticator, install_error_handlers
from services.contracts.policy import Legal
from services.contracts.topics import INGEST_RESOURCES
from services.ingest.fhir import DIRECTORY_TYPES
from services.records.config import RecordsSettings
from services.records.consumer import IngestHandler
from services.records.service import Denied, NotFound, Reader, ReadRequest
from services.records.store import make_engine
from services.records.vault import Shredded, Vault

FHIR_JSON = "application/fhir+json"


def _outcome(status: int, code: str, text: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"resourceType": "OperationOutcome",
                         "issue": [{"severity": "error", "code": code, "diagnostics": text}]},
                        status_code=status, media_type=FHIR_JSON, headers=headers)


def _json_header(raw: str | None, name: str) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} must be a JSON object") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object")
    return value


def create_app(settings: RecordsSettings | None = None) -> FastAPI:
    settings = settings or RecordsSettings()
    keys = PlatformKeys(settings.state_dir)
    engine = make_engine(settings.store_url)
    vault = Vault(keys.keyring(), keys.blind_index_key(), keys.pseudonym_key())
    producer = Producer(settings.kafka_bootstrap, "healthgov-records")
    reader = Reader(engine=engine, vault=vault, policy=PolicyClient(settings.opa_url), producer=producer)
    handler = IngestHandler(engine=engine, vault=vault, hpke_private=keys.records_hpke_private(),
                            producer=producer)
    consumer = ConsumerLoop(bootstrap=settings.kafka_bootstrap, topic=INGEST_RESOURCES,
                            group_id=settings.consumer_group, handler=handler)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        consumer.start()
        yield
        consumer.stop()
        producer.close()

    app = FastAPI(title="healthgov records", version="1.0", lifespan=lifespan)
    app.state.authenticator = build_authenticator(settings, "records")
    app.state.handler = handler
    install_error_handlers(app)

    def build_request(request: Request, caller: Any, **kw: Any) -> ReadRequest:
        h = request.headers
        purpose = h.get("x-purpose-of-use") or caller.purpose or ""
        reason = h.get("x-break-glass-reason")
        legal = Legal(warrant=_json_header(h.get("x-warrant"), "X-Warrant"),
                      ethics_approval=_json_header(h.get("x-ethics-approval"), "X-Ethics-Approval"))
        return ReadRequest(purpose=purpose, legal=legal,
                           break_glass={"reason": reason} if reason else None,
                           request_id=h.get("x-request-id"), **kw)

    async def run(caller: Any, req: ReadRequest) -> Response:
        try:
            out = await run_in_threadpool(reader.read, caller, req)
        except Denied as exc:
            return _outcome(403, "forbidden", "access denied: " + ", ".join(exc.reasons),
                            {"X-Healthgov-Event-Id": exc.event_id})
        except NotFound as exc:
            return _outcome(404, "not-found", str(exc))
        except Shredded:
            return _outcome(410, "deleted", "this patient's records were erased")
        return Response(out.body, media_type=FHIR_JSON,
                        headers={"X-Healthgov-Event-Id": out.event_id,
                                 "X-Healthgov-Withheld": str(out.withheld)})

    @app.exception_handler(ValueError)
    async def _bad(_request: Request, exc: ValueError) -> JSONResponse:
        return _outcome(400, "invalid", str(exc))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "consumer": consumer.healthy, "stored": handler.stored}

    @app.get("/fhir/Patient/{pid}/$everything")
    async def everything(pid: str, request: Request, caller: CallerDep) -> Response:
        return await run(caller, build_request(request, caller, patient_id=pid))

    @app.get("/fhir/{rtype}/{rid}")
    async def read_one(rtype: str, rid: str, request: Request, caller: CallerDep) -> Response:
        return await run(caller, build_request(request, caller, rtype=rtype, rid=rid))

    @app.get("/fhir/{rtype}")
    async def search(rtype: str, request: Request, caller: CallerDep,
                     patient: Annotated[str | None, Query()] = None,
                     identifier: Annotated[str | None, Query()] = None) -> Response:
        if not patient and not identifier:
            if rtype in DIRECTORY_TYPES:
                return await run(caller, build_request(request, caller, rtype=rtype, directory=True))
            return _outcome(400, "required", "search needs patient= or identifier=")
        if patient and patient.startswith("Patient/"):
            patient = patient.split("/", 1)[1]
        return await run(caller, build_request(request, caller, rtype=rtype, patient_id=patient,
                                               identifier=identifier))

    return app



