"""The audit trail's routes that name people: events, entries, receipts, statistics.

Every route takes an authenticated caller and asks OPA (``audit_read``)
through ``AuditService``; a patient's queries are pinned to their own events
and to events no longer sealed. Thin: parse, call the service, shape.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from services.adapters.web import CallerDep, Int64Query, OptionalInt64Query
from services.audit import export, query
from services.audit.service import AuditService
from services.contracts import errors
from services.contracts.vocabulary import Outcome
from services.tlog import wire

router = APIRouter()
MAX_JSON_ENTRIES = 10_000


def _service(request: Request) -> AuditService:
    return request.app.state.audit  # type: ignore[no-any-return]


ServiceDep = Annotated[AuditService, Depends(_service)]


def event_filter(
    svc: ServiceDep,
    patient: Annotated[str | None, Query(description="the patient's FHIR id")] = None,
    pseudonym: Annotated[str | None, Query(description="the patient's platform pseudonym")] = None,
    accessor: Annotated[str | None, Query(description="accessor id (a user of accessor_org)")] = None,
    accessor_org: str | None = None,
    org_type: str | None = None,
    purpose: str | None = None,
    kind: str | None = None,
    outcome: Outcome | None = None,
    since: Annotated[str | None, Query(description="RFC 3339, inclusive")] = None,
    until: Annotated[str | None, Query(description="RFC 3339, exclusive")] = None,
) -> query.EventFilter:
    """The query's filters, with a patient's FHIR id turned into the pseudonym events carry."""
    if patient is not None and pseudonym is not None and svc.pseudonym(patient) != pseudonym:
        raise errors.Invalid("patient and pseudonym name different patients")
    return query.EventFilter(
        patient=svc.pseudonym(patient) if patient is not None else pseudonym, accessor=accessor,
        accessor_org=accessor_org, org_type=org_type, purpose=purpose, kind=kind, outcome=outcome,
        since=query.norm_time(since) if since else None, until=query.norm_time(until) if until else None)


FilterDep = Annotated[query.EventFilter, Depends(event_filter)]


@router.get("/events", response_model=None)
def events(request: Request, caller: CallerDep, svc: ServiceDep, flt: FilterDep,
           cursor: Int64Query = 0,
           limit: Annotated[int, Query(ge=1, le=query.MAX_PAGE)] = 100,
           format: Literal["json", "csv", "fhir"] = "json") -> Response | dict[str, Any]:
    """Events in log order, filtered; ``next_cursor`` continues the query. JSON, CSV or FHIR."""
    page = svc.events(caller, flt, cursor, limit)
    next_url = str(request.url.include_query_params(cursor=page.next_cursor)) if page.next_cursor else None
    headers = {"X-Next-Cursor": str(page.next_cursor)} if page.next_cursor is not None else {}
    if format == "csv":
        if next_url:
            headers["Link"] = f'<{next_url}>; rel="next"'
        return Response(export.events_csv(page.rows), media_type="text/csv; charset=utf-8", headers=headers)
    if format == "fhir":
        return JSONResponse(export.events_fhir(page.rows, str(request.url), next_url),
                            media_type="application/fhir+json", headers=headers)
    return {"events": export.events_json(page.rows), "next_cursor": page.next_cursor}


@router.get("/trail")
def patient_trail(caller: CallerDep, svc: ServiceDep, flt: FilterDep,
                  page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
                  per_page: Annotated[int, Query(ge=1, le=100)] = 20,
                  kinds: Annotated[list[str] | None, Query(description="any of these kinds")] = None,
                  org_types: Annotated[list[str] | None, Query(description="any of these org types")] = None,
                  ) -> dict[str, Any]:
    """One patient's trail newest first, in numbered pages with totals; their own reads counted, not listed.

    A patient (through the portal) gets their own, unsealed events whatever
    ``patient`` says; a regulator names the patient.
    """
    if flt.patient is None and caller.org_type != "patient":
        raise errors.Invalid("name the patient (patient or pseudonym)")
    if caller.org_type == "patient":
        flt = query.EventFilter(**{**flt.__dict__, "patient": svc.pseudonym(caller.patient or "")})
    got = svc.patient_trail(caller, flt, page=page, per_page=per_page, kinds=tuple(kinds or ()),
                            org_types=tuple(org_types or ()))
    return {"events": export.events_json(got.rows), "total": got.total, "page": page, "per_page": per_page,
            "pages": max(1, -(-got.total // per_page)),
            "own_views": {"count": got.own_views, "last": got.own_last}}


@router.get("/stats")
def stats(caller: CallerDep, svc: ServiceDep, flt: FilterDep) -> dict[str, Any]:
    """Counts for dashboards (who may see them: as for ``/events``)."""
    out = svc.stats(caller, flt)
    latest = svc.checkpoints.latest()
    witnessed = svc.checkpoints.latest(witnessed=True)
    out["log"] = {"size": svc.log.size(), "checkpoint": latest.size if latest else None,
                  "witnessed_checkpoint": witnessed.size if witnessed else None}
    return out


@router.get("/receipts/{event_id}")
def receipt(event_id: str, caller: CallerDep, svc: ServiceDep) -> dict[str, Any]:
    """One JSON receipt that proves, offline, this event is in the log (see ``receipt.py``)."""
    return svc.receipt(caller, event_id)


def _entries_range(svc: AuditService, caller: Any, start: int, end: int | None) -> int:
    svc.entries_allowed(caller)
    size = svc.log.size()
    end = size if end is None else min(end, size)
    if start > end:
        raise errors.Invalid("need start <= end")
    return end


@router.get("/entries")
def entries(caller: CallerDep, svc: ServiceDep, start: Int64Query, end: Int64Query) -> Response:
    """Raw log entries ``[start, end)`` as JSON (base64), at most 10,000 per request."""
    if end - start > MAX_JSON_ENTRIES:
        raise errors.Invalid(f"at most {MAX_JSON_ENTRIES} entries per request; /entries/raw streams")
    end = _entries_range(svc, caller, start, end)
    rows = svc.log.iter_bodies(start, end)
    body = b"[" + b",".join(b'{"index":%d,"entry":"%s"}' % (i, base64.b64encode(e)) for i, e in rows) + b"]"
    return Response(body, media_type="application/json")


@router.get("/entries/raw")
def entries_raw(caller: CallerDep, svc: ServiceDep, start: Int64Query = 0,
                end: OptionalInt64Query = None) -> StreamingResponse:
    """Every entry of ``[start, end)`` (default: the whole log) in one binary stream (``wire.py``)."""
    end = _entries_range(svc, caller, start, end)
    return StreamingResponse(wire.encode_entries(svc.log.iter_bodies(start, end)), media_type=wire.MEDIA_TYPE,
                             headers={"X-Tree-Size": str(end)})
