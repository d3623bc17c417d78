"""Oversight HTTP API: the regulator's view of every hospital (port 8004, docs/architecture.md §14).

Two consumers keep the metrics tables current (``consumer.py``): quality
reports from ingest and the audit trail. Every route but ``/healthz`` needs a
caller OPA lets read the whole audit trail (``audit_read`` of everything: the
regulator), exactly as the audit service asks; judging a break-glass access
is its own action (``oversight_review``: the regulator, or the privacy officer
of the hospital whose staff broke the glass, who also sees that hospital's
review queue and nothing else). JSON for the regulator's own tools,
CSV where a spreadsheet is the tool.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from services.adapters.audit_log import AuditLog
from services.adapters.auth import Caller, load_registry, purpose_of_use
from services.adapters.kafka import ConsumerLoop, Producer
from services.adapters.keys import PlatformKeys
from services.adapters.policy import PolicyClient
from services.adapters.telemetry import install_telemetry
from services.adapters.web import CallerDep, build_authenticator, install_error_handlers
from services.contracts import errors
from services.contracts.events import rfc3339
from services.contracts.policy import PolicyInput, PolicyResource
from services.contracts.topics import AUDIT_EVENTS, QUALITY_REPORTS
from services.oversight import queries
from services.oversight.complaints import MAX_TEXT, Complaints, ComplaintState
from services.oversight.config import OversightSettings
from services.oversight.consumer import AuditHandler, QualityHandler
from services.oversight.queries import MAX_PAGE, SORTABLE, EventQuery, Period
from services.oversight.reviews import MAX_NOTE, Reviews, Verdict
from services.oversight.rules import Thresholds
from services.oversight.store import make_engine

Page = Annotated[int, Query(ge=1, le=1_000_000)]
PerPage = Annotated[int, Query(ge=1, le=MAX_PAGE)]
# No control characters (PostgreSQL refuses a NUL in text): refused at the door as a 400.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
Day = Annotated[str | None, Query(description="RFC 3339 instant or YYYY-MM-DD", max_length=40, pattern=PRINTABLE)]
Name = Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)]
EventId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9\-]+$")]
ReviewState = Literal["open", "overdue", "justified", "not_justified", "all"]


def _instant(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise errors.Invalid(f"{name}: an RFC 3339 instant or a date (YYYY-MM-DD)") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def regulator(request: Request, caller: CallerDep) -> Caller:
    """Who may read the whole audit trail may read what is made of it (OPA ``audit_read``, no patient)."""
    policy: PolicyClient = request.app.state.policy
    decision = policy.decide(PolicyInput(
        subject=caller.subject(), action="audit_read", purpose=purpose_of_use(caller, default="HCOMPL"),
        resource=PolicyResource(patient=None, type="AuditEvent"), now=rfc3339(datetime.now(UTC))))
    if not decision.allow:
        raise errors.Forbidden("oversight is the regulator's: " + ", ".join(decision.reasons),
                               reasons=decision.reasons)
    return caller


Regulator = Annotated[Caller, Depends(regulator)]


def review_scope(request: Request, caller: CallerDep) -> str | None:
    """Whose break-glass accesses the caller sees in the review queue: every hospital's (``None``) or one.

    A hospital's privacy officer judges their own hospital's accesses (OPA
    ``oversight_review`` of that hospital, the rule that decides each verdict),
    so sees that hospital's queue and no other; anyone else needs the
    regulator's ``audit_read``.
    """
    if caller.org_type == "hospital" and caller.role == "privacy_officer":
        reviews: Reviews = request.app.state.reviews
        decision = reviews.decide(caller, datetime.now(UTC), hospital=caller.org)
        if not decision.allow:
            raise errors.Forbidden("review denied: " + ", ".join(decision.reasons), reasons=decision.reasons)
        return caller.org
    regulator(request, caller)
    return None


ReviewScope = Annotated[str | None, Depends(review_scope)]


class ComplaintBody(BaseModel):
    event_id: str = Field(max_length=64, pattern=r"^[A-Za-z0-9\-]+$")
    reason: str = Field(min_length=1, max_length=MAX_TEXT, pattern=r"^[^\x00]*$")


class AnswerBody(BaseModel):
    answer: str = Field(min_length=1, max_length=MAX_TEXT, pattern=r"^[^\x00]*$")


class ReviewBody(BaseModel):
    verdict: Verdict
    note: str = Field(default="", max_length=MAX_NOTE, pattern=r"^[^\x00]*$")


def create_app(settings: OversightSettings | None = None) -> FastAPI:
    settings = settings or OversightSettings()
    engine = make_engine(settings.store_url)
    producer = Producer(settings.kafka_bootstrap, "healthgov-oversight")
    policy = PolicyClient(settings.opa_url)
    registry = load_registry(settings.registry_file)
    hospitals = queries.hospitals_of(registry, settings.default_cadence_hours)
    thresholds: Thresholds = settings.thresholds
    quality = QualityHandler(engine, producer)
    audit = AuditHandler(engine, producer, thresholds=thresholds, review_days=settings.review_days)
    loops = [ConsumerLoop(bootstrap=settings.kafka_bootstrap, topic=QUALITY_REPORTS, group_id=settings.reports_group,
                          handler=quality, max_records=2000, gather_ms=50),
             ConsumerLoop(bootstrap=settings.kafka_bootstrap, topic=AUDIT_EVENTS, group_id=settings.audit_group,
                          handler=audit, max_records=2000, gather_ms=50)]
    reviews = Reviews(engine=engine, policy=policy, log=AuditLog(producer))
    keys = PlatformKeys(settings.state_dir)
    complaints = Complaints(engine=engine, policy=policy, log=AuditLog(producer),
                            pseudonym_key=keys.pseudonym_key(), key=keys.oversight_key())

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        if settings.oversight_consume:
            for loop in loops:
                loop.start()
        yield
        if settings.oversight_consume:
            for loop in loops:
                loop.stop()
        producer.close()
        engine.dispose()

    app = FastAPI(title="healthgov oversight", version="1.0", lifespan=lifespan)
    app.state.authenticator = build_authenticator(settings, "oversight")
    app.state.audit_log = AuditLog(producer)
    app.state.policy = policy
    app.state.reviews = reviews
    install_error_handlers(app, fhir=False)


    def period(since: str | None, until: str | None) -> Period:
        start, end = _instant(since, "since"), _instant(until, "until")
        default = queries.default_period(settings.period_days)
        out = Period(start or (end - timedelta(days=settings.period_days) if end else default.start),
                     end or default.end)
        if out.start >= out.end:
            raise errors.Invalid("since must be before until")
        return out

    def known(hospital: str) -> None:
        if hospital not in hospitals:
            raise errors.NotFound("no such hospital in the registry")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "consumers": [loop.healthy for loop in loops] if settings.oversight_consume else [],
                "reports": quality.consumed, "events": audit.consumed, "flags_raised": audit.flags_raised,
                "dead_lettered": quality.dead_lettered + audit.dead_lettered}

    @app.get("/hospitals", response_model=None)
    def hospitals_table(_caller: Regulator, since: Day = None, until: Day = None,
                        sort: Literal[SORTABLE] = "rank",  # type: ignore[valid-type]
                        order: Literal["asc", "desc"] | None = None,
                        format: Literal["json", "csv"] = "json") -> Response | dict[str, Any]:
        """Every hospital of the registry: score, volume, coverage, timeliness, rejections, quality, flags."""
        p = period(since, until)
        rows = queries.hospitals_table(engine, hospitals, p, datetime.now(UTC))
        descending = order == "desc" if order else sort not in ("rank", "hospital", "name", "rejection_rate")
        rows = queries.sort_table(rows, sort, descending)
        if format == "csv":
            return Response(queries.table_csv(rows), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": 'attachment; filename="hospitals.csv"'})
        return {"since": p.start.isoformat(), "until": p.end.isoformat(), "hospitals": [m.as_json() for m in rows]}

    @app.get("/hospitals/{hospital}")
    def hospital_page(hospital: str, _caller: Regulator, since: Day = None, until: Day = None) -> dict[str, Any]:
        """One hospital: its row of the table and its series over time (quality, lag, reasons, access)."""
        known(hospital)
        p = period(since, until)
        table = queries.hospitals_table(engine, hospitals, p, datetime.now(UTC))
        row = next(m for m in table if m.hospital == hospital)
        return {"since": p.start.isoformat(), "until": p.end.isoformat(),
                "cadence_hours": hospitals[hospital].cadence_hours, "metrics": row.as_json(),
                **queries.hospital_series(engine, hospital, p)}

    @app.get("/anomalies")
    def anomalies(_caller: Regulator, hospital: Name = None, rule: Name = None, page: Page = 1,
                  per_page: PerPage = 50) -> dict[str, Any]:
        """Flags raised by the access rules, newest first: rule, evidence and the events."""
        return queries.flags(engine, hospital=hospital, rule=rule, page=page, per_page=per_page)

    @app.get("/reviews")
    def review_queue(scope: ReviewScope, state: ReviewState = "open", hospital: Name = None, page: Page = 1,
                     per_page: PerPage = 50) -> dict[str, Any]:
        """Break-glass accesses awaiting review (open ones due first), or judged ones.

        A privacy officer's queue is their own hospital's, whatever ``hospital`` asks.
        """
        hospital = scope if scope is not None else hospital
        return {"review_days": settings.review_days,
                **queries.reviews(engine, state=state, hospital=hospital, now=datetime.now(UTC), page=page,
                                  per_page=per_page)}

    @app.post("/reviews/{event_id}")
    async def judge(event_id: EventId, body: ReviewBody, caller: CallerDep) -> dict[str, Any]:
        """Judge one break-glass access (OPA ``oversight_review``); the verdict is an audit event."""
        return await run_in_threadpool(reviews.judge, caller, event_id, body.verdict, body.note, datetime.now(UTC))

    @app.post("/complaints", status_code=201)
    async def file_complaint(body: ComplaintBody, caller: CallerDep) -> dict[str, Any]:
        """A patient reports one access of their own trail (OPA ``complaint_file``); audited, then queued."""
        out = await run_in_threadpool(complaints.file, caller, body.event_id, body.reason, datetime.now(UTC))
        return {k: v for k, v in out.items() if k != "patient"}

    @app.get("/complaints/mine")
    async def my_complaints(caller: CallerDep) -> dict[str, Any]:
        """The calling patient's complaints and their state (open, answered), with the answer."""
        return {"complaints": await run_in_threadpool(complaints.mine, caller)}

    @app.get("/complaints")
    def complaint_queue(_caller: Regulator, state: ComplaintState = "open", page: Page = 1,
                        per_page: PerPage = 50) -> dict[str, Any]:
        """The regulator's complaint queue: open ones oldest first, or answered ones, or all."""
        return complaints.queue(state, page, per_page)

    @app.post("/complaints/{complaint_id}/answer")
    async def answer_complaint(complaint_id: EventId, body: AnswerBody, caller: CallerDep) -> dict[str, Any]:
        """The regulator answers a complaint (OPA ``complaint_answer``); the answer is an audit event."""
        return await run_in_threadpool(complaints.answer, caller, complaint_id, body.answer, datetime.now(UTC))

    @app.get("/audit/events", response_model=None)
    def audit_events(request: Request, _caller: Regulator, hospital: Name = None, accessor: Name = None,
                     patient: Annotated[str | None, Query(description="the patient pseudonym", max_length=200,
                                                          pattern=PRINTABLE)] = None,
                     purpose: Name = None, kind: Name = None, since: Day = None, until: Day = None,
                     page: Page = 1, per_page: PerPage = 100,
                     format: Literal["json", "csv"] = "json") -> Response | dict[str, Any]:
        """The audit trail, newest first, filtered, with the total; CSV for a spreadsheet."""
        q = EventQuery(hospital=hospital, accessor=accessor, patient=patient, purpose=purpose, kind=kind,
                       since=_instant(since, "since"), until=_instant(until, "until"))
        found = queries.events(engine, q, page, per_page)
        if format == "csv":
            headers = {"X-Total-Count": str(found["total"]),
                       "Content-Disposition": 'attachment; filename="audit-events.csv"'}
            if page < found["pages"]:
                headers["Link"] = f'<{request.url.include_query_params(page=page + 1)}>; rel="next"'
            return Response(queries.events_csv(found["events"]), media_type="text/csv; charset=utf-8",
                            headers=headers)
        return found

    install_telemetry(app, "oversight")
    return app
