"""HTTP routes of data-use projects and FHIR Bulk Data ``$export`` (HL7 Bulk Data Access IG).

Projects: ``POST /projects`` (a research organisation applies, with its signed
ethics approval in ``X-Ethics-Approval``), ``GET /projects/{id}``,
``POST /projects/{id}/$approve|$suspend|$revoke`` (the regulator).

Export: kick-off ``GET /fhir/$export``, ``/fhir/Patient/$export`` (both with
``project=``) or ``/fhir/Group/{project id}/$export``, with ``Prefer:
respond-async`` → 202 and ``Content-Location`` (``_type``, ``_since``,
``_elements`` and ``_typeFilter`` as ``bulk_params`` says; any other
parameter the IG defines is refused, never ignored); ``GET /export-jobs/{id}``
answers 202 with ``X-Progress`` while running, then 200 with the manifest;
``DELETE`` cancels; ``GET /export-jobs/{id}/files/{n}`` downloads one NDJSON
file, only to the organisation that asked for it, until the job expires.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from services.adapters.auth import Caller
from services.adapters.web import MAX_INT64, CallerDep, current_caller, json_body
from services.contracts import errors
from services.contracts.events import rfc3339
from services.records import bulk_params
from services.records.authority import AuthorityReader
from services.records.exports import Exporter
from services.records.projects import ProjectRegistry, utc
from services.records.store import ExportJob

NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
UNSUPPORTED = frozenset({"includeAssociatedData", "patient"})


def _types(raw: str | None) -> list[str] | None:
    if raw is None or raw == "":
        return None
    names = [t.strip() for t in raw.split(",") if t.strip()]
    if not names or not all(n.isalpha() and n[:1].isupper() and len(n) <= 64 for n in names):
        raise errors.Invalid("_type is a comma-separated list of FHIR resource type names")
    return names


def _since(raw: str | None) -> datetime | None:
    if raw is None or raw == "":
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError("no time zone")
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise errors.Invalid("_since must be an FHIR instant with its time zone (e.g. 2026-01-01T00:00:00Z)") from exc


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def manifest(job: ExportJob, parts: list[tuple[int, str, int]], base: str) -> dict[str, Any]:
    """The completion manifest: files by type, and an OperationOutcome of who was left out and why (counts only)."""
    out = [{"type": rtype, "url": f"{base}/export-jobs/{job.id}/files/{pk}", "count": n} for pk, rtype, n in parts]
    excluded: dict[str, int] = orjson.loads(job.excluded)
    withheld: dict[str, int] = orjson.loads(job.withheld)
    errs = []
    if excluded or withheld:
        errs.append({"type": "OperationOutcome", "url": f"{base}/export-jobs/{job.id}/files/outcome", "count":
                     len(excluded) + len(withheld)})
    return {"transactionTime": rfc3339(utc(job.transaction_time)), "request": job.request,
            "requiresAccessToken": True, "output": out, "error": errs,
            "extension": {"project": job.project, "excludedPatients": sum(excluded.values())}}


def outcome_lines(job: ExportJob) -> bytes:
    """One OperationOutcome per reason: how many patients or resources were left out, never whom."""
    lines = []
    for what, counts in (("patients", orjson.loads(job.excluded)), ("resources", orjson.loads(job.withheld))):
        for reason, n in sorted(counts.items()):
            lines.append(orjson.dumps({"resourceType": "OperationOutcome", "issue": [{
                "severity": "information", "code": "suppressed",
                "diagnostics": f"{n} {what} left out: {reason}"}]}))
    return b"".join(line + b"\n" for line in lines)


def install_export_routes(app: FastAPI, projects: ProjectRegistry, exporter: Exporter,
                          authority: AuthorityReader, bulk_caller: Any = None) -> None:
    """Register the routes (before the generic ``/fhir/{type}`` routes, which would otherwise match).

    ``bulk_caller`` (``smart.install_smart_routes``) lets the kick-off, status,
    cancel and download routes also accept a SMART Backend Services access
    token, which a Bulk Data client reuses across its requests.
    """
    bulk = bulk_caller or Depends(current_caller)

    @app.post("/projects", status_code=201, openapi_extra=json_body())
    async def apply(request: Request, caller: CallerDep) -> Response:
        try:
            doc = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise errors.Invalid("the body is not valid JSON", code="structure") from exc
        how = authority(request, caller)
        approval = request.headers.get("x-ethics-approval")
        out = await run_in_threadpool(projects.apply, caller, how, doc, approval)
        return JSONResponse(out, status_code=201, headers={"Location": f"/projects/{out['id']}"})

    @app.get("/projects/{pid}")
    async def read_project(pid: str, caller: CallerDep) -> Response:
        return JSONResponse(await run_in_threadpool(projects.read, caller, pid))

    @app.post("/projects/{pid}/{step}")
    async def review(pid: str, step: str, request: Request, caller: CallerDep) -> Response:
        if not step.startswith("$"):
            raise errors.NotFound("no such operation")
        out = await run_in_threadpool(projects.review, caller, authority(request, caller), pid, step[1:])
        return JSONResponse(out)

    async def kickoff(request: Request, caller: Caller, project: str | None, types: str | None,
                      since: str | None) -> Response:
        if "respond-async" not in request.headers.get("prefer", ""):
            raise errors.Invalid("a Bulk Data kick-off needs 'Prefer: respond-async'")
        if not project:
            raise errors.Invalid("name the data-use project: Group/{project id}/$export, or project=")
        unsupported = sorted(set(request.query_params) & UNSUPPORTED)
        if unsupported:  # the IG: a server refuses a parameter it does not apply rather than ignore it
            raise errors.Invalid(f"not supported: {', '.join(unsupported)}", code="not-supported")
        fmt = request.query_params.get("_outputFormat")
        if fmt is not None and fmt not in OUTPUT_FORMATS:
            raise errors.Invalid("_outputFormat: only application/fhir+ndjson", code="not-supported")
        elements = bulk_params.parse_elements(request.query_params.getlist("_elements"))
        filters = bulk_params.parse_type_filters(request.query_params.getlist("_typeFilter"))
        how = authority(request, caller)
        job_id = await run_in_threadpool(exporter.kickoff, caller, how, project, _types(types), _since(since),
                                         str(request.url), elements, filters)
        return Response(status_code=202, headers={"Content-Location": f"{_base(request)}/export-jobs/{job_id}"})

    @app.get("/fhir/$export")
    async def export_system(request: Request, caller: Caller = bulk, project: Annotated[str | None, Query()] = None,
                            _type: Annotated[str | None, Query(alias="_type")] = None,
                            _since: Annotated[str | None, Query(alias="_since")] = None) -> Response:
        return await kickoff(request, caller, project, _type, _since)

    @app.get("/fhir/Patient/$export")
    async def export_patients(request: Request, caller: Caller = bulk, project: Annotated[str | None, Query()] = None,
                              _type: Annotated[str | None, Query(alias="_type")] = None,
                              _since: Annotated[str | None, Query(alias="_since")] = None) -> Response:
        return await kickoff(request, caller, project, _type, _since)

    @app.get("/fhir/Group/{gid}/$export")
    async def export_group(gid: str, request: Request, caller: Caller = bulk,
                           _type: Annotated[str | None, Query(alias="_type")] = None,
                           _since: Annotated[str | None, Query(alias="_since")] = None) -> Response:
        return await kickoff(request, caller, gid, _type, _since)

    @app.get("/export-jobs/{jid}")
    async def status(jid: str, request: Request, caller: Caller = bulk) -> Response:
        job = await run_in_threadpool(exporter.job_of, caller, jid)
        if job.status in ("queued", "running"):
            done = f"{job.patients_done}/{job.patients_total or '?'} patients"
            return Response(status_code=202, headers={"X-Progress": done, "Retry-After": "1"})
        if job.status == "completed":
            parts = await run_in_threadpool(exporter.parts, job.id)
            return JSONResponse(manifest(job, parts, _base(request)),
                                headers={"Expires": format_datetime(utc(job.expires_at), usegmt=True)}
                                if job.expires_at else None)
        if job.status == "failed":
            raise errors.Invalid("the export failed: " + ", ".join(
                k.removeprefix("failed: ") for k in orjson.loads(job.withheld) if k.startswith("failed: ")),
                code="processing")
        raise errors.NotFound(f"the export was {job.status}")

    @app.delete("/export-jobs/{jid}", status_code=202)
    async def cancel(jid: str, caller: Caller = bulk) -> Response:
        await run_in_threadpool(exporter.cancel, caller, jid)
        return Response(status_code=202)

    @app.get("/export-jobs/{jid}/files/outcome")
    async def outcome(jid: str, caller: Caller = bulk) -> Response:
        job = await run_in_threadpool(exporter.job_of, caller, jid)
        if job.status != "completed":
            raise errors.NotFound("no such file")
        return Response(outcome_lines(job), media_type=NDJSON)

    @app.get("/export-jobs/{jid}/files/{part}")
    async def download(jid: str, part: Annotated[int, Path(ge=1, le=MAX_INT64)], caller: Caller = bulk) -> Response:
        return Response(await run_in_threadpool(exporter.download, caller, jid, part), media_type=NDJSON)
