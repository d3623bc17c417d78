"""What every HTTP service shares: caller authentication, one error handler, security headers.

Routes take a ``CallerDep`` and never see a token. Every error a caller can
get is a ``HealthgovError`` (``services/contracts/errors.py``), mapped here and
only here: FHIR services answer an OperationOutcome, the others a small JSON
object, both with a message written for the caller and never the text of an
exception from inside (a driver's or validator's message can quote data).
FastAPI's own answers (unknown path 404, 405, bad parameters) go through the
same mapping; anything unexpected is logged with its traceback and answered
with a generic 500 that says nothing about its cause.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.adapters.audit_log import AuditLog
from services.adapters.auth import Authenticator, AuthError, Caller, bearer, load_registry
from services.adapters.config import PlatformSettings
from services.adapters.keys import PlatformKeys
from services.contracts import errors
from services.contracts.events import AuditDecision, AuditEvent

log = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"
MAX_INT64 = 2**63 - 1  # the widest integer PostgreSQL stores: larger ones are refused at the door

# Counts and positions that reach the database: non-negative and within BIGINT.
Int64Query = Annotated[int, Query(ge=0, le=MAX_INT64)]
OptionalInt64Query = Annotated[int | None, Query(ge=0, le=MAX_INT64)]

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
)


def json_body(media_type: str = FHIR_JSON) -> dict[str, Any]:
    """OpenAPI for a route that reads its JSON body itself: callers and fuzzers see that one is expected."""
    return {"requestBody": {"required": True, "content": {media_type: {"schema": {"type": "object"}}}}}


def refusal_event(who: Caller, reason: str, route: str) -> AuditEvent:
    """The audit event of a refusal made before any policy question (the caller's identity is proven).

    ``route`` is the route's template (``GET /fhir/Patient/{pid}``), never the path itself: a path
    can hold a patient's record id, and the log holds no PHI.
    """
    return AuditEvent(kind="denial", accessor=who.accessor(),
                      decision=AuditDecision(allow=False, reasons=[reason]),
                      details={"action": "authenticate", "route": route})


def build_authenticator(settings: PlatformSettings, audience: str) -> Authenticator:
    registry = load_registry(settings.registry_file)
    keys = PlatformKeys(settings.state_dir).org_public_keys(list(registry["orgs"]))
    return Authenticator(audience=audience, registry=registry, public_keys=keys,
                         portal_org=settings.portal_org)


async def current_caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    """The verified caller; on the event loop, as a signature check is cheaper than a thread hand-off."""
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator.verify(bearer(authorization))


CallerDep = Annotated[Caller, Depends(current_caller)]


class SecurityHeaders:
    """Adds the headers every healthgov answer carries, unless a route set its own (pure ASGI: no copy)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in SECURITY_HEADERS if k not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security_headers(app: FastAPI) -> None:
    app.add_middleware(SecurityHeaders)


def _http_error(exc: StarletteHTTPException) -> errors.HealthgovError:
    """FastAPI/Starlette's own refusals as members of the family (their detail is our own wording)."""
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        return errors.NotFound("no such endpoint" if detail in (None, "Not Found") else detail, headers=headers)
    if exc.status_code == 405:
        return errors.MethodNotAllowed("method not allowed on this endpoint", headers=headers)
    if exc.status_code >= 500:
        return errors.HealthgovError(status=exc.status_code)
    return errors.HealthgovError(detail, headers=headers, status=exc.status_code)


def _parameter_error(exc: RequestValidationError) -> errors.Invalid:
    """Bad path, query or header parameters: where and what rule, never the value sent."""
    issues = []
    for err in exc.errors()[:20]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        issues.append({"severity": "error", "code": "invalid", "diagnostics": f"{where}: {err.get('msg', 'invalid')}",
                       "expression": [where]})
    return errors.Invalid("invalid request parameters", issues=issues)


def error_body(exc: errors.HealthgovError, fhir: bool) -> dict[str, Any]:
    if fhir:
        return errors.operation_outcome(exc.fhir_issues())
    body: dict[str, Any] = {"error": exc.code, "detail": exc.message}
    if exc.reasons:
        body["reasons"] = exc.reasons
    return body


def install_error_handlers(app: FastAPI, fhir: bool = True) -> None:
    """The one mapping of errors to answers for this service; also adds the security headers."""
    media_type = FHIR_JSON if fhir else "application/json"

    def answer(exc: errors.HealthgovError) -> JSONResponse:
        return JSONResponse(error_body(exc, fhir), status_code=exc.status, media_type=media_type,
                            headers=exc.headers or None)

    @app.exception_handler(errors.HealthgovError)
    async def _domain(request: Request, exc: errors.HealthgovError) -> JSONResponse:
        if exc.status >= 500:  # a dependency is down: operators need the inside detail, callers do not
            log.warning("%s: %s", type(exc).__name__, exc)
        audit_log: AuditLog | None = getattr(request.app.state, "audit_log", None)
        if isinstance(exc, AuthError) and exc.who is not None and audit_log is not None:
            # A proven identity refused before any policy question: on the record like any refusal.
            route = request.scope.get("route")
            event = refusal_event(exc.who, exc.reason, f"{request.method} {getattr(route, 'path', '?')}")
            try:
                await run_in_threadpool(audit_log.publish, event)
            except errors.HealthgovError as down:  # the refusal stands; that it went unrecorded must not
                return answer(down)
            exc.headers[errors.EVENT_HEADER] = event.event_id
        return answer(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return answer(_http_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _parameters(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(_parameter_error(exc))

    @app.exception_handler(OperationalError)
    async def _database(_request: Request, exc: OperationalError) -> JSONResponse:
        # The driver's message can quote the statement's parameters: it goes to no one.
        log.warning("database unavailable: %s", type(exc.orig or exc).__name__)
        return answer(errors.Unavailable("database unavailable, try again shortly"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug: the traceback goes to the log, the caller learns only that it was ours.
        # The route's template, not the path: a path can hold a patient's record id.
        route = getattr(request.scope.get("route"), "path", "?")
        log.error("unhandled error on %s %s", request.method, route, exc_info=exc)
        resp = answer(errors.HealthgovError("internal error; the platform's operators can see what happened"))
        resp.headers.update({k.decode(): v.decode() for k, v in SECURITY_HEADERS})
        return resp

    install_security_headers(app)
