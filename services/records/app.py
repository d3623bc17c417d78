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

import threading
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from services.adapters.audit_log import AuditLog
from services.adapters.auth import Caller
from services.adapters.documents import DocumentVerifier
from services.adapters.kafka import ConsumerLoop, Producer, instance_id
from services.adapters.keys import PlatformKeys
from services.adapters.policy import PolicyClient
from services.adapters.runtime import freeze_startup_heap
from services.adapters.telemetry import install_telemetry
from services.adapters.web import MAX_INT64, CallerDep, build_authenticator, install_error_handlers, json_body
from services.contracts import errors
from services.contracts.ids import is_fhir_id
from services.contracts.topics import CONSENT_CHANGES, INGEST_RESOURCES
from services.fhir.compartment import DIRECTORY_TYPES
from services.records import search
from services.records.analytics import notifiable, rates
from services.records.analytics.api import Refresher, install_analytics_routes
from services.records.analytics.ledger import ReleaseLedger
from services.records.analytics.privacy import dp_default
from services.records.analytics.sdc import Control
from services.records.analytics.sdc import Settings as DisclosureSettings
from services.records.analytics.service import Analytics
from services.records.analytics.store import AnalyticStore
from services.records.authority import AuthorityReader
from services.records.config import RecordsSettings
from services.records.consent_consumer import ConsentChangeHandler
from services.records.consumer import IngestHandler
from services.records.erasure import Eraser
from services.records.export_api import install_export_routes
from services.records.exports import Exporter
from services.records.gate import Gate
from services.records.notices import NoticeOutbox
from services.records.projects import ProjectRegistry
from services.records.referrals import Referrals
from services.records.registry import ConsentRegistry
from services.records.service import DOWNLOAD_FORMATS, Reader, ReadRequest
from services.records.smart import TokenService, install_smart_routes
from services.records.store import make_engine, read_engine
from services.records.vault import Vault

FHIR_JSON = "application/fhir+json"
EVENT_HEADER = errors.EVENT_HEADER
DOWNLOAD_HEADER = "X-Healthgov-Download"


def informational(status: int, code: str, text: str, headers: dict[str, str]) -> JSONResponse:
    """A successful answer that is only a statement: an OperationOutcome of severity information."""
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": code, "diagnostics": text}]}
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def _parse_json(raw: str | bytes, what: str) -> Any:
    """JSON the caller sent; orjson refuses nesting deeper than 1024 levels instead of exhausting the stack."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.Invalid(f"{what} is not valid JSON", code="structure") from exc


def _json_object(raw: Any, name: str) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        raw = _parse_json(raw, name)
    if not isinstance(raw, dict):
        raise errors.Invalid(f"{name} must be a JSON object")
    return raw


def _fhir_id(value: str, what: str) -> str:
    """A path's logical id; one no resource can have is simply not found (nothing further is asked)."""
    if not is_fhir_id(value):
        raise errors.NotFound(f"no such {what}")
    return value


def create_app(settings: RecordsSettings | None = None) -> FastAPI:
    settings = settings or RecordsSettings()
    keys = PlatformKeys(settings.state_dir)
    engine = make_engine(settings.store_url)
    vault = Vault(keys.keyring(), keys.blind_index_key(), keys.pseudonym_key())
    producer = Producer(settings.kafka_bootstrap, "healthgov-records", instance_id())
    policy = PolicyClient(settings.opa_url)
    outbox = NoticeOutbox(engine)
    gate = Gate(AuditLog(producer), outbox)
    reader = Reader(engine=read_engine(engine), vault=vault, policy=policy, gate=gate)
    registry = ConsentRegistry(engine=engine, vault=vault, policy=policy, gate=gate)
    eraser = Eraser(engine=engine, vault=vault, policy=policy, gate=gate)
    referrals = Referrals(engine=engine, vault=vault, policy=policy, gate=gate,
                          referral_window=timedelta(days=settings.referral_days),
                          grant_window=timedelta(days=settings.patient_grant_days))
    handler = IngestHandler(engine=engine, vault=vault, hpke_private=keys.records_hpke_private(),
                            producer=producer, gate=gate, care_window=timedelta(days=settings.care_window_days))
    consent_handler = ConsentChangeHandler(engine=engine, vault=vault, producer=producer)
    consumers = [
        ConsumerLoop(bootstrap=settings.kafka_bootstrap, topic=INGEST_RESOURCES,
                     group_id=settings.consumer_group, handler=handler, instance=instance_id()),
        ConsumerLoop(bootstrap=settings.kafka_bootstrap, topic=CONSENT_CHANGES,
                     group_id=settings.consumer_group + "-consents", handler=consent_handler,
                     instance=instance_id()),
    ]

    app_keys = build_authenticator(settings, "records")
    verifier = DocumentVerifier(app_keys.registry, app_keys.keys)
    projects = ProjectRegistry(engine=engine, policy=policy, gate=gate, verifier=verifier)
    exporter = Exporter(engine=engine, vault=vault, policy=policy, gate=gate, projects=projects,
                        keyring=keys.keyring(), retention=timedelta(hours=settings.export_retention_hours))
    person_key, parquet_key = keys.analytics_keys()
    analytics = Analytics(
        store=AnalyticStore(settings.analytics_root, engine=read_engine(engine), vault=vault, person_key=person_key,
                            master_key=parquet_key),
        policy=policy, gate=gate, projects=projects,
        control=Control(DisclosureSettings(settings.analytics_threshold, settings.analytics_rounding)),
        ledger=ReleaseLedger(engine, parquet_key), dp_default=dp_default(settings),
        diseases=notifiable.load(settings.notifiable_diseases_file),
        populations=rates.load(settings.district_populations_file))
    refresher = Refresher(analytics, settings.analytics_refresh_seconds)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        threading.Thread(target=producer.fence_predecessors, name="kafka-fence", daemon=True).start()
        for consumer in consumers:
            consumer.start()
        exporter.start()  # resumes the jobs a previous run left running
        refresher.start()
        yield
        refresher.stop()
        exporter.stop()
        for consumer in consumers:
            consumer.stop()
        producer.close()

    app = FastAPI(title="healthgov records", version="1.0", lifespan=lifespan)
    app.state.authenticator = app_keys
    authority = AuthorityReader(verifier=verifier, gate=gate, pseudonym=vault.pseudonym)
    app.state.exporter = exporter
    app.state.handler = handler
    app.state.audit_log = gate.log
    install_error_handlers(app)  # the one mapping of every refusal (denied, not found, erased, ...)

    async def read(request: Request, caller: Caller, **kw: Any) -> Response:
        out = await run_in_threadpool(reader.read, caller, ReadRequest(authority=authority(request, caller), **kw))
        return Response(out.body, media_type=FHIR_JSON,
                        headers={EVENT_HEADER: out.event_id, "X-Healthgov-Withheld": str(out.withheld)})

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "consumer": all(c.healthy for c in consumers), "stored": handler.stored,
                "consents_applied": consent_handler.applied}

    # --- consents -----------------------------------------------------------------

    @app.post("/fhir/Consent", status_code=201, openapi_extra=json_body())
    async def create_consent(request: Request, caller: CallerDep) -> Response:
        doc = _parse_json(await request.body(), "the body")
        out = await run_in_threadpool(registry.create, caller, doc, authority(request, caller))
        return _consent_response(out, 201)

    @app.post("/fhir/Consent/{cid}/$confirm")
    async def confirm_consent(cid: str, request: Request, caller: CallerDep) -> Response:
        """The patient confirms a permit a hospital recorded on their behalf (until then it is not in force)."""
        out = await run_in_threadpool(registry.confirm, caller, _fhir_id(cid, "Consent"), authority(request, caller))
        return _consent_response(out, 200)

    @app.delete("/fhir/Consent/{cid}")
    async def revoke_consent(cid: str, request: Request, caller: CallerDep) -> Response:
        out = await run_in_threadpool(registry.revoke, caller, _fhir_id(cid, "Consent"), authority(request, caller))
        return _consent_response(out, 200)

    # --- the patient: notices, everything, erasure, referral ---------------------------

    @app.get("/notices")
    async def notices(caller: CallerDep) -> Response:
        """The signed-in patient's notices (first access by a hospital, break-glass, access by the state).

        Only a patient's own token (the portal's, with a ``patient`` claim) reads them: a notice is
        about who reached the patient's record, and says so to the patient alone.
        """
        if caller.org_type != "patient" or not caller.patient:
            raise errors.Forbidden("notices are read by the patient they are addressed to")
        rows = await run_in_threadpool(outbox.visible, vault.pseudonym(caller.patient))
        return JSONResponse({"notices": [
            {"kind": n.kind, "org": n.org, "org_type": n.org_type, "about_org": n.about_org, "purpose": n.purpose,
             "project": n.project,
             "event_id": n.event_id, "at": n.created_at.isoformat(),
             "visible_from": n.visible_from.isoformat()} for n in rows]})

    @app.get("/fhir/Patient/{pid}/$everything")
    async def everything(pid: str, request: Request, caller: CallerDep,
                         download: Annotated[str | None, Header(alias=DOWNLOAD_HEADER)] = None) -> Response:
        """The patient's whole record; ``X-Healthgov-Download`` marks the patient's own copy taken away as a file.

        A download is audited as an act of its own (kind ``download``), so the patient's trail lists it
        instead of folding it into their own views. Only a patient's own token may say so.
        """
        if download is not None:
            if download not in DOWNLOAD_FORMATS:
                raise errors.Invalid(f"{DOWNLOAD_HEADER} must be one of {', '.join(DOWNLOAD_FORMATS)}")
            if caller.org_type != "patient" or not caller.patient:
                raise errors.Invalid(f"{DOWNLOAD_HEADER} is for a patient's own copy of their record")
        return await read(request, caller, patient_id=_fhir_id(pid, "Patient"), download=download)

    @app.delete("/fhir/Patient/{pid}")
    async def erase(pid: str, request: Request, caller: CallerDep) -> Response:
        out = await run_in_threadpool(eraser.erase, caller, _fhir_id(pid, "Patient"), authority(request, caller))
        return informational(200, "deleted", "the patient's data key was destroyed; their records are unreadable",
                            {EVENT_HEADER: out})

    @app.post("/fhir/Patient/{pid}/$refer", openapi_extra=json_body())
    async def refer(pid: str, request: Request, caller: CallerDep) -> Response:
        hospital = _referral_target(await request.body())
        created, event_id = await run_in_threadpool(referrals.refer, caller, _fhir_id(pid, "Patient"), hospital,
                                                    authority(request, caller))
        return informational(201 if created else 200, "informational", f"{hospital} now has a care relationship",
                             {EVENT_HEADER: event_id})

    bulk_caller = install_smart_routes(app, TokenService(app_keys, keys.records_token_key()), gate)
    install_export_routes(app, projects, exporter, authority, bulk_caller)
    install_analytics_routes(app, analytics, authority)

    # --- generic FHIR reads -------------------------------------------------------------

    @app.get("/fhir/{rtype}/{rid}/_history")
    async def history(rtype: str, rid: str, request: Request, caller: CallerDep) -> Response:
        return await read(request, caller, rtype=rtype, rid=_fhir_id(rid, rtype), history=True)

    @app.get("/fhir/{rtype}/{rid}/_history/{vid}")
    async def vread(rtype: str, rid: str, vid: Annotated[int, Path(ge=1, le=MAX_INT64)], request: Request,
                    caller: CallerDep) -> Response:
        return await read(request, caller, rtype=rtype, rid=_fhir_id(rid, rtype), version=vid)

    @app.get("/fhir/{rtype}/{rid}")
    async def read_one(rtype: str, rid: str, request: Request, caller: CallerDep) -> Response:
        return await read(request, caller, rtype=rtype, rid=_fhir_id(rid, rtype))

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
            raise errors.Invalid(f"{rtype}?identifier= is not supported; search by the patient: "
                                 "patient= or patient.identifier=system|value", code="not-supported")
        if not patient and not patient_identifier:
            if rtype in DIRECTORY_TYPES:
                return await read(request, caller, rtype=rtype, directory=True, filters=filters)
            raise errors.Invalid("search needs patient= or patient.identifier= (Patient: identifier=)",
                                 code="required")
        if patient and patient.startswith("Patient/"):
            patient = patient.split("/", 1)[1]
        return await read(request, caller, rtype=rtype, patient_id=patient, identifier=patient_identifier,
                          filters=filters)

    install_telemetry(app, "records")
    freeze_startup_heap()
    return app


def _consent_response(out: Any, status: int) -> Response:
    headers = {EVENT_HEADER: out.event_id, "Location": f"Consent/{out.consent_id}/_history/{out.version}",
               "ETag": f'W/"{out.version}"'}
    return Response(out.body, status_code=status if out.applied else 202, media_type=FHIR_JSON, headers=headers)


def _referral_target(body: bytes) -> str:
    """The hospital from ``Parameters`` (``organization`` as valueReference/valueString/valueId)."""
    doc = _parse_json(body or b"{}", "the body")
    params = doc.get("parameter") if isinstance(doc, dict) else None
    for p in params if isinstance(params, list) else []:
        if isinstance(p, dict) and p.get("name") == "organization":
            value_reference = p.get("valueReference")
            ref = (value_reference.get("reference") if isinstance(value_reference, dict) else None) \
                or p.get("valueString") or p.get("valueId")
            if isinstance(ref, str) and ref:
                return ref.split("/", 1)[1] if ref.startswith("Organization/") else ref
    raise errors.Invalid("$refer needs a Parameters resource with parameter 'organization' "
                     "(valueReference Organization/<org id>)")
