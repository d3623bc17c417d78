"""Portal: the browser front for patients and regulators (port 8000).

Patients sign in (argon2id) and see their records, every access to them, and
a proof for each; the portal calls records and audit with its own key and a
``patient`` claim, so one patient can never reach another's data. Regulators
query the audit trail and verify the log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
from fastapi import Cookie, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from services.adapters.auth import load_registry
from services.adapters.keys import PlatformKeys
from services.audit.client import AuditClient
from services.audit.verify import verify_log
from services.portal import views
from services.portal.accounts import Accounts, Principal
from services.portal.clients import PortalClients, Upstream
from services.portal.config import PortalSettings

COOKIE = "healthgov_session"
ORG_TYPES = ["hospital", "public_health", "law_enforcement", "regulator", "research", "insurer",
             "commercial", "patient"]
KINDS = ["disclosure", "denial", "break_glass", "consent", "erasure", "key_rotation", "ingest"]


def create_app(settings: PortalSettings | None = None) -> FastAPI:
    settings = settings or PortalSettings()
    keys = PlatformKeys(settings.state_dir)
    accounts = Accounts(settings.store_url, keys.portal_key())
    clients = PortalClients(settings, keys)
    registry = load_registry(settings.registry_file)
    templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
    app = FastAPI(title="healthgov portal", version="1.0")
    app.state.accounts = accounts

    def page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        resp = templates.TemplateResponse(request, name, ctx, status_code=status)
        resp.headers["Content-Security-Policy"] = "default-src 'self'; style-src 'unsafe-inline'"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def same_origin(request: Request) -> bool:
        """Reject cross-site form posts (the cookie is SameSite=Strict as well)."""
        origin = request.headers.get("origin")
        return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_model=None)
    def index(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = accounts.session(sid)
        if who is None:
            return page(request, "login.html", who=None)
        return RedirectResponse("/me" if who.role == "patient" else "/regulator", status_code=303)

    @app.post("/login", response_model=None)
    async def login(request: Request, username: Annotated[str, Form()],
                    password: Annotated[str, Form()]) -> Response:
        if not same_origin(request):
            return Response("cross-site request refused", status_code=403)
        who = await run_in_threadpool(accounts.authenticate, username, password)
        if who is None:
            return page(request, "login.html", status=401, who=None, error="Wrong username or password.")
        sid = accounts.open_session(who, settings.session_ttl_s)
        resp = RedirectResponse("/me" if who.role == "patient" else "/regulator", status_code=303)
        resp.set_cookie(COOKIE, sid, max_age=settings.session_ttl_s, httponly=True, samesite="strict",
                        secure=not settings.dev_mode)
        return resp

    @app.post("/logout", response_model=None)
    def logout(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        if not same_origin(request):
            return Response("cross-site request refused", status_code=403)
        accounts.close_session(sid)
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    def signed_in(sid: str | None, role: str) -> Principal | None:
        who = accounts.session(sid)
        return who if who is not None and who.role == role else None

    @app.get("/me", response_model=None)
    def me(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = signed_in(sid, "patient")
        if who is None:
            return RedirectResponse("/", status_code=303)
        ctx: dict[str, Any] = {"who": who, "summary": [], "conditions": [], "access": []}
        try:
            ctx["summary"], ctx["conditions"] = views.record_summary(clients.my_records(who))
        except Upstream as exc:
            ctx["records_error"] = f"Your records cannot be shown right now ({exc.detail})."
        try:
            ctx["access"] = views.event_rows(clients.my_access(who)["events"], registry)[::-1]
        except Upstream as exc:
            ctx["access_error"] = f"Your access history cannot be shown right now ({exc.detail})."
        return page(request, "patient.html", **ctx)

    @app.get("/me/records.json", response_model=None)
    def me_records(sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Any:
        who = signed_in(sid, "patient")
        if who is None:
            return Response(status_code=401)
        return clients.my_records(who)

    @app.get("/me/access.json", response_model=None)
    def me_access(sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Any:
        who = signed_in(sid, "patient")
        if who is None:
            return Response(status_code=401)
        return clients.my_access(who)

    def regulator_ctx(who: Principal, request: Request) -> dict[str, Any]:
        filters = {k: request.query_params.get(k) or None
                   for k in ("org_type", "purpose", "kind", "outcome", "patient", "cursor")}
        ctx: dict[str, Any] = {"who": who, "filters": filters, "org_types": ORG_TYPES, "kinds": KINDS,
                               "events": [], "checkpoint": None}
        try:
            page_ = clients.events(who, limit=100, **filters)
            ctx["events"] = views.event_rows(page_["events"], registry)
            if page_.get("next_cursor") is not None:
                ctx["next_cursor"] = page_["next_cursor"]
                ctx["next_query"] = urlencode({**{k: v for k, v in filters.items() if v},
                                               "cursor": page_["next_cursor"]})
        except Upstream as exc:
            ctx["error"] = f"The audit trail cannot be queried right now ({exc.detail})."
        try:
            cps = clients.public("/checkpoints").json()
            if cps:
                last = cps[-1]
                ctx["checkpoint"] = {"size": last["size"], "root": last["root"], "note": last["note"]}
        except Upstream:
            pass
        return ctx

    @app.get("/regulator", response_model=None)
    def regulator(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = signed_in(sid, "regulator")
        if who is None:
            return RedirectResponse("/", status_code=303)
        return page(request, "regulator.html", **regulator_ctx(who, request))

    @app.post("/regulator/verify", response_model=None)
    def regulator_verify(request: Request,
                         sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = signed_in(sid, "regulator")
        if who is None or not same_origin(request):
            return RedirectResponse("/", status_code=303)
        ctx = regulator_ctx(who, request)
        source = AuditClient(settings.audit_url, token=lambda: clients.token_for(who, "audit"))
        try:
            report = verify_log(source, source.verifier_key())
            ctx["verify"] = {"ok": report.ok, "problems": report.problems,
                             "summary": (f"{report.entries} entries and {report.checkpoints} signed checkpoints "
                                         + ("verify." if report.ok else "do NOT verify."))}
        except (httpx.HTTPError, PermissionError) as exc:
            ctx["error"] = f"The log could not be fetched ({exc})."
        finally:
            source.close()
        return page(request, "regulator.html", **ctx)

    @app.get("/receipts/{event_id}", response_model=None)
    def receipt(event_id: str, request: Request,
                sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = accounts.session(sid)
        if who is None:
            return RedirectResponse("/", status_code=303)
        try:
            data = clients.receipt(who, event_id)
            vkey = clients.public("/verifier-key").text.strip()
            result = views.check_receipt(data, vkey)
        except Upstream as exc:
            result = {"ok": False, "error": exc.detail, "key": ""}
        return page(request, "receipt.html", who=who, event_id=event_id, result=result,
                    audit_url=settings.audit_url)

    return app
