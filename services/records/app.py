"""Records HTTP API (port 8002): the policy-enforced, audited FHIR API of the vault.

Reads: ``GET /fhir/{type}/{id}``, ``/fhir/{type}/{id}/_history[/{vid}]``,
``/fhir/{type}?patient=|identifier=|patient.identifier=`` (with ``code`` and
``date``), ``/fhir/Patient/{id}/$everything``. Consents: ``POST /fhir/Consent``,
``DELETE /fhir/Consent/{id}`` (revoke), reads as above. Erasure:
``DELETE /fhir/Patient/{id}``. Referrals: ``POST /fhir/Patient/{id}/$refer``.

The purpose of use is the token's ``purpose`` claim (``X-Purpose-Of-Use`` may
restate it, never change it); a break-glass reason comes from the claim
``break_glass_reason`` or ``X-Break-Glass-Reason``; a warrant and an ethics
approval are documents signed by the issuing court or ethics board, from the
claims ``warrant``/``ethics_approval`` or the headers ``X-Warrant``/
``X-Ethics-Approval`` (``services.records.authority``). Every response that carries data, and every denial, carries
``X-Healthgov-Event-Id``: the audit event published before it left.

The app also runs the ``ingest.resources.v1`` and ``consent.changes.v1``
consumers in background threads.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from services.adapters.auth import Caller
from services.adapters.documents import DocumentVerifier
from services.adapters.kafka import ConsumerLoop, Producer
from services.adapters.keys import PlatformKeys
from services.adapters.policy import PolicyClient
from services.adapters.runtime import freeze_startup_heap
from services.adapters.web import CallerDep, build_authenticator, install_error_handlers
from services.contracts.topics import CONSENT_CHANGES, INGEST_RESOURCES
from services.fhir.compartment import DIRECTORY_TYPES
from services.records import search
from services.records.access import Denied, NotFound
from services.records.authority import AuthorityReader
from services.records.config import RecordsSettings
from services.records.consent_consumer import ConsentChangeHandler
from services.records.consents import InvalidConsent
from services.records.consumer import IngestHandler
from services.records.erasure import Eraser
from services.records.referrals import Referrals
from services.records.registry import Conflict, ConsentRegistry
from services.records.service import Reader, ReadRequest
from services.records.store import make_engine, read_engine
from services.records.vault import Shredded, Vault

FHIR_JSON = "application/fhir+json"
EVENT_HEADER = "X-Healthgov-Event-Id"


def outcome(status: int, code: str, text: str, headers: dict[str, str] | None = None,
            issues: list[dict[str, Any]] | None = None, severity: str = "error") -> JSONResponse:
    """A FHIR OperationOutcome response."""
    body = {"resourceType": "OperationOutcome",
            "issue": issues or [{"severity": severity, "code": code, "diagnostics": text}]}
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def create_app(settings: RecordsSettings | None = None) -> FastAPI:
    settings = settings or RecordsSettings()
    keys = PlatformKeys(settings.state_dir)
    engine = make_engine(settings.store_url)
    vault = Vault(keys.keyring(), keys.blind_index_key(), keys.pseudonym_key())
    producer = Producer(settings.kafka_bootstrap, "healthgov-records")
    policy = PolicyClient(settings.opa_url)
    reader = Reader(engine=read_engine(engine), vault=vault, policy=policy, producer=producer)
    registry = ConsentRegistry(engine=engine, vault=vault, policy=policy, producer=producer)
    eraser = Eraser(engine=engine, vault=vault, policy=policy, producer=producer)
    referrals = Referrals(engine=engine, vault=vault, policy=policy, producer=producer)
    handler = IngestHandler(engine=engine, vault=vault, hpke_private=keys.records_hpke_private(),
                            producer=producer)
    consent_handler = ConsentChangeHandler(engine=engine, vault=vault, producer=producer)
    consumers = [
        ConsumerLoop(bootstrap=settings.kafka_bootstrap, topic=INGEST_RESOURCES,
                     group_id=settings.consumer_group, handler=handler),
        ConsumerLoop(bootstrap=settings.kafka_bootstrap, topic=CONSENT_CHANGES,
                     group_id=settings.consumer_group + "-consents", handler=consent_handler),
    ]

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        for consumer in consumers:
            consumer.start()
        yield
        for consumer in consumers:
            consumer.stop()
        producer.close()

    app = FastAPI(title="healthgov records", version="1.0", lifespan=lifespan)
    app.state.authenticator = authenticator = build_authenticator(settings, "records")
    authority = AuthorityReader(verifier=DocumentVerifier(authenticator.registry, authenticator.keys),
                                producer=producer, pseudonym=vault.pseudonym)
    app.state.handler = handler
    install_error_handlers(app)

    async def guarded(call: Any, *args: Any) -> Any:
        """Run a use case off the event loop; map domain errors to FHIR answers."""
        try:
            return await run_in_threadpool(call, *args)
        except Denied as exc:
            return outcome(403, "forbidden", "access denied: " + ", ".join(exc.reasons),
                           {EVENT_HEADER: exc.event_id})
        except NotFound as exc:
            return outcome(404, "not-found", str(exc))
        except Shredded:
            return outcome(410, "deleted", "this patient's records were erased")
        except InvalidConsent as exc:
            return outcome(400, "invalid", str(exc), issues=[i.to_fhir() for i in exc.issues])
        except Conflict as exc:
            return outcome(409, "conflict", str(exc))

    async def read(request: Request, caller: Caller, **kw: Any) -> Response:
        out = await guarded(reader.read, caller, ReadRequest(authority=authority(request, caller), **kw))
        if isinstance(out, Response):
            return out
        return Response(out.body, media_type=FHIR_JSON,
                        headers={EVENT_HEADER: out.event_id, "X-Healthgov-Withheld": str(out.withheld)})

    @app.exception_handler(Denied)
    async def _denied(_request: Request, exc: Denied) -> JSONResponse:
        return outcome(403, "forbidden", "access denied: " + ", ".join(exc.reasons), {EVENT_HEADER: exc.event_id})

    @app.exception_handler(ValueError)
    async def _bad(_request: Request, exc: ValueError) -> JSONResponse:
        return outcome(400, "invalid", str(exc))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "consumer": all(c.healthy for c in consumers), "stored": handler.stored,
                "consents_applied": consent_handler.applied}

    # --- consents -----------------------------------------------------------------

    @app.post("/fhir/Consent", status_code=201)
    async def create_consent(request: Request, caller: CallerDep) -> Response:
        try:
            doc = json.loads(await request.body())
        except json.JSONDecodeError as exc:
            return outcome(400, "structure", f"malformed JSON: {exc}")
        out = await guarded(registry.create, caller, doc, authority(request, caller))
        return out if isinstance(out, Response) else _consent_response(out, 201)

    @app.delete("/fhir/Consent/{cid}")
    async def revoke_consent(cid: str, request: Request, caller: CallerDep) -> Response:
        out = await guarded(registry.revoke, caller, cid, authority(request, caller))
        return out if isinstance(out, Response) else _consent_response(out, 200)

    # --- the patient: everything, erasure, referral ---------------------------------

    @app.get("/fhir/Patient/{pid}/$everything")
    async def everything(pid: str, request: Request, caller: CallerDep) -> Response:
        return await read(request, caller, patient_id=pid)

    @app.delete("/fhir/Patient/{pid}")
    async def erase(pid: str, request: Request, caller: CallerDep) -> Response:
        out = await guarded(eraser.erase, caller, pid, authority(request, caller))
        if isinstance(out, Response):
            return out
        return outcome(200, "deleted", "the patient's data key was destroyed; their records are unreadable",
                       {EVENT_HEADER: out}, severity="information")

    @app.post("/fhir/Patient/{pid}/$refer")
    async def refer(pid: str, request: Request, caller: CallerDep) -> Response:
        hospital = _referral_target(await request.body())
        out = await guarded(referrals.refer, caller, pid, hospital, authority(request, caller))
        if isinstance(out, Response):
            return out
        created, event_id = out
        return outcome(201 if created else 200, "informational", f"{hospital} now has a care relationship",
                       {EVENT_HEADER: event_id}, severity="information")

    # --- generic FHIR reads -------------------------------------------------------------

    @app.get("/fhir/{rtype}/{rid}/_history")
    async def history(rtype: str, rid: str, request: Request, caller: CallerDep) -> Response:
        return await read(request, caller, rtype=rtype, rid=rid, history=True)

    @app.get("/fhir/{rtype}/{rid}/_history/{vid}")
    async def vread(rtype: str, rid: str, vid: int, request: Request, caller: CallerDep) -> Response:
        return await read(request, caller, rtype=rtype, rid=rid, version=vid)

    @app.get("/fhir/{rtype}/{rid}")
    async def read_one(rtype: str, rid: str, request: Request, caller: CallerDep) -> Response:
        return await read(request, caller, rtype=rtype, rid=rid)

    @app.get("/fhir/{rtype}")
    async def search_type(rtype: str, request: Request, caller: CallerDep,
                          patient: Annotated[str | None, Query()] = None,
                          identifier: Annotated[str | None, Query()] = None,
                          patient_identifier: Annotated[str | None, Query(alias="patient.identifier")] = None,
                          code: Annotated[str | None, Query()] = None,
                          date: Annotated[list[str] | None, Query()] = None) -> Response:
        filters = search.parse_filters(code, date or [])
        if rtype == "Patient" and identifier:
            patient_identifier, identifier = identifier, None
        if identifier:
            return outcome(400, "not-supported", f"{rtype}?identifier= is not supported; "
                           "search by the patient: patient= or patient.identifier=system|value")
        if not patient and not patient_identifier:
            if rtype in DIRECTORY_TYPES:
                return await read(request, caller, rtype=rtype, directory=True, filters=filters)
            return outcome(400, "required", "search needs patient= or patient.identifier= (Patient: identifier=)")
        if patient and patient.startswith("Patient/"):
            patient = patient.split("/", 1)[1]
        return await read(request, caller, rtype=rtype, patient_id=patient, identifier=patient_identifier,
                          filters=filters)

    freeze_startup_heap()
    return app


def _consent_response(out: Any, status: int) -> Response:
    headers = {EVENT_HEADER: out.event_id, "Location": f"Consent/{out.consent_id}/_history/{out.version}",
               "ETag": f'W/"{out.version}"'}
    return Response(out.body, status_code=status if out.applied else 202, media_type=FHIR_JSON, headers=headers)


def _referral_target(body: bytes) -> str:
    """The hospital from ``Parameters`` (``organization`` as valueReference/valueString/valueId)."""
    try:
        doc = json.loads(body or b"{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON: {exc}") from exc
    params = doc.get("parameter") if isinstance(doc, dict) else None
    for p in params or []:
        if isinstance(p, dict) and p.get("name") == "organization":
            ref = (p.get("valueReference") or {}).get("reference") or p.get("valueString") or p.get("valueId")
            if isinstance(ref, str) and ref:
                return ref.split("/", 1)[1] if ref.startswith("Organization/") else ref
    raise ValueError("$refer needs a Parameters resource with parameter 'organization' "
                     "(valueReference Organization/<org id>)")
