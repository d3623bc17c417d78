"""Portal: the browser front for patients and regulators (port 8000).

Patients sign in (argon2id) and see their records, every access to them, and
a proof for each; the portal calls records and audit with its own key and a
``patient`` claim, so one patient can never reach another's data. Regulators
query the audit trail and verify the log.

Patients also decide who may use their data (consents, through records'
Consent API) and may erase their records. Every form that changes something
is checked here first: signed-in patient, same origin, the form's synchroniser
token (``csrf.py``), valid input, and, for a withdrawal, a consent id from the
patient's own list; records and the policy then check again. Sign-in is
throttled per account and per client address (``throttle.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
from fastapi import Cookie, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from services.adapters.auth import load_registry
from services.adapters.keys import PlatformKeys
from services.adapters.web import install_error_handlers
from services.portal import consents, views
from services.portal.accounts import Accounts, Principal
from services.portal.clients import PortalClients, Upstream
from services.portal.config import PortalSettings
from services.portal.csrf import FIELD, HEADER, LOGIN_COOKIE, CsrfTokens
from services.portal.throttle import SignInThrottle
from services.tlog.client import AuditClient
from services.tlog.verify import verify_log

COOKIE = "healthgov_session"
ORG_TYPES = ["hospital", "public_health", "law_enforcement", "regulator", "research", "insurer",
             "commercial", "patient"]
KINDS = ["disclosure", "denial", "break_glass", "consent", "erasure", "key_rotation", "ingest", "referral",
         "care_relationship"]
# What the patient page says after a change (the redirect carries only the key).
NOTICES = {
    "granted": "Your choice is saved and in force.",
    "pending": "Your choice is saved; it takes effect within a few seconds.",
    "revoked": "The permission is withdrawn.",
    "revoke_pending": "The permission is withdrawn; this takes effect within a few seconds.",
    "confirmed": "You confirmed the permission; it is in force.",
    "care_granted": "The hospital may now treat you and read your records.",
}


def create_app(settings: PortalSettings | None = None) -> FastAPI:
    settings = settings or PortalSettings()
    keys = PlatformKeys(settings.state_dir)
    accounts = Accounts(settings.store_url, keys.portal_key())
    clients = PortalClients(settings, keys)
    registry = load_registry(settings.registry_file)
    templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
    tokens = CsrfTokens(keys.portal_key())
    throttle = SignInThrottle(account_limit=settings.signin_account_failures,
                              account_window_s=settings.signin_account_window_s,
                              address_limit=settings.signin_address_failures,
                              address_window_s=settings.signin_address_window_s)
    app = FastAPI(title="healthgov portal", version="1.0")
    app.state.accounts = accounts
    install_error_handlers(app, fhir=False)

    def page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("csrf_token", tokens.for_session(request.cookies.get(COOKIE)))
        resp = templates.TemplateResponse(request, name, ctx, status_code=status)
        resp.headers["Content-Security-Policy"] = "default-src 'self'; style-src 'unsafe-inline'"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Cache-Control"] = "no-store"
        # Not the APIs' no-referrer: under it a browser sends `Origin: null` with every form post, and the
        # same-origin check below refuses them all. same-origin still sends nothing to other sites.
        resp.headers["Referrer-Policy"] = "same-origin"
        return resp

    def cross_site() -> Response:
        return Response("cross-site request refused", status_code=403)

    def same_origin(request: Request) -> bool:
        """Reject cross-site form posts (the cookie is SameSite=Strict as well)."""
        origin = request.headers.get("origin")
        return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def token_ok(request: Request, expected: str) -> bool:
        """The form's synchroniser token (or the X-CSRF-Token header) is the one this browser was given."""
        supplied = request.headers.get(HEADER)
        if supplied is None:
            value = (await request.form()).get(FIELD)
            supplied = value if isinstance(value, str) else None
        return tokens.matches(expected, supplied)


    def sign_in_page(request: Request, status: int = 200, headers: dict[str, str] | None = None,
                     **ctx: Any) -> HTMLResponse:
        """The sign-in form with its token, bound to a nonce cookie that is set here if missing."""
        nonce = request.cookies.get(LOGIN_COOKIE) or tokens.new_nonce()
        resp = page(request, "login.html", status=status, who=None, csrf_token=tokens.for_sign_in(nonce), **ctx)
        if nonce != request.cookies.get(LOGIN_COOKIE):
            resp.set_cookie(LOGIN_COOKIE, nonce, max_age=settings.session_ttl_s, httponly=True, samesite="strict",
                            secure=not settings.dev_mode)
        resp.headers.update(headers or {})
        return resp

    @app.get("/", response_model=None)
    def index(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = accounts.session(sid)
        if who is None:
            return sign_in_page(request)
        return RedirectResponse("/me" if who.role == "patient" else "/regulator", status_code=303)

    @app.post("/login", response_model=None)
    async def login(request: Request, username: Annotated[str, Form()],
                    password: Annotated[str, Form()]) -> Response:
        if not same_origin(request) or not await token_ok(
                request, tokens.for_sign_in(request.cookies.get(LOGIN_COOKIE))):
            return cross_site()
        address = request.client.host if request.client else "unknown"
        wait = throttle.retry_after(username, address)
        if wait:  # refused before the password is even checked: guessing gains nothing
            return sign_in_page(request, status=429, headers={"Retry-After": str(wait)},
                                error=f"Too many failed sign-ins. Try again in {wait} seconds.")
        who = await run_in_threadpool(accounts.authenticate, username, password)
        if who is None:
            throttle.failed(username, address)
            return sign_in_page(request, status=401, error="Wrong username or password.")
        throttle.succeeded(username)
        sid = accounts.open_session(who, settings.session_ttl_s)
        resp = RedirectResponse("/me" if who.role == "patient" else "/regulator", status_code=303)
        resp.set_cookie(COOKIE, sid, max_age=settings.session_ttl_s, httponly=True, samesite="strict",
                        secure=not settings.dev_mode)
        resp.delete_cookie(LOGIN_COOKIE)
        return resp

    @app.post("/logout", response_model=None)
    async def logout(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        if not same_origin(request) or (accounts.session(sid) is not None
                                        and not await token_ok(request, tokens.for_session(sid))):
            return cross_site()
        accounts.close_session(sid)
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    def signed_in(sid: str | None, role: str) -> Principal | None:
        who = accounts.session(sid)
        return who if who is not None and who.role == role else None

    async def poster(request: Request, sid: str | None, role: str) -> Principal | Response:
        """Who posts a state-changing form: same origin, signed in as ``role``, with the session's token.

        Without a session nothing can change, so the browser is sent to sign in; a wrong or missing
        token on a live session is a forged request and is refused.
        """
        if not same_origin(request):
            return cross_site()
        who = signed_in(sid, role)
        if who is None:
            return RedirectResponse("/", status_code=303)
        if not await token_ok(request, tokens.for_session(sid)):
            return cross_site()
        return who

    def patient_ctx(who: Principal) -> dict[str, Any]:
        """Everything the patient page shows; each part says in words when it cannot be had."""
        ctx: dict[str, Any] = {"who": who, "summary": [], "conditions": [], "access": [], "consents": [],
                               "erased": False, "grantees": consents.third_parties(registry),
                               "purposes": consents.PURPOSES, "record_types": consents.RECORD_TYPES,
                               "default_days": consents.DEFAULT_PERMIT_DAYS, "form": {},
                               "hospitals": consents.hospitals(registry), "notices": []}
        try:
            ctx["summary"], ctx["conditions"] = views.record_summary(clients.my_records(who))
        except Upstream as exc:
            if exc.status == 410:
                ctx["erased"] = True
            else:
                ctx["records_error"] = f"Your records cannot be shown right now ({exc.detail})."
        if not ctx["erased"]:
            try:
                ctx["consents"] = consents.consent_rows(clients.my_consents(who), registry)
            except Upstream as exc:
                ctx["consents_error"] = f"Your choices cannot be shown right now ({exc.detail})."
        try:
            ctx["notices"] = consents.notice_rows(clients.my_notices(who), registry)
        except Upstream as exc:
            ctx["notices_error"] = f"Your messages cannot be shown right now ({exc.detail})."
        try:
            ctx["access"] = views.event_rows(clients.my_access(who)["events"], registry)[::-1]
        except Upstream as exc:
            ctx["access_error"] = f"Your access history cannot be shown right now ({exc.detail})."
        return ctx

    async def patient_page(request: Request, who: Principal, status: int = 200, **extra: Any) -> HTMLResponse:
        ctx = await run_in_threadpool(patient_ctx, who)
        return page(request, "patient.html", status=status, **{**ctx, **extra})

    async def form_fields(request: Request) -> dict[str, list[str]]:
        """The posted form as lists of strings: validation, not FastAPI, answers a bad form (400, in words)."""
        form = await request.form()
        return {k: [v for v in form.getlist(k) if isinstance(v, str)] for k in form}

    @app.get("/me", response_model=None)
    async def me(request: Request, done: str | None = None,
                 sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = signed_in(sid, "patient")
        if who is None:
            return RedirectResponse("/", status_code=303)
        return await patient_page(request, who, notice=NOTICES.get(done or ""))

    @app.post("/me/consents", response_model=None)
    async def grant_consent(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = await poster(request, sid, "patient")
        if isinstance(who, Response):
            return who
        form = await form_fields(request)
        try:
            grant = consents.parse_grant(form, registry, datetime.now(UTC).date())
        except consents.FormError as exc:
            return await patient_page(request, who, 400, consent_error=str(exc), form=consents.echo(form))
        try:
            applied = await run_in_threadpool(clients.grant_consent, who, grant.to_fhir(who.subject))
        except Upstream as exc:
            return await patient_page(request, who, exc.status, form=consents.echo(form),
                                      consent_error=f"Your choice could not be saved: {exc.detail}.")
        return RedirectResponse(f"/me?done={'granted' if applied else 'pending'}#consents", status_code=303)

    @app.post("/me/consents/{consent_id}/revoke", response_model=None)
    async def revoke_consent(consent_id: str, request: Request,
                             sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = await poster(request, sid, "patient")
        if isinstance(who, Response):
            return who
        try:
            own = await run_in_threadpool(clients.my_consents, who)
            if consent_id not in consents.revocable_ids(consents.consent_rows(own, registry)):
                return await patient_page(request, who, 404, consent_error=(
                    "That permission is not one of yours, or it is already withdrawn; nothing was changed."))
            applied = await run_in_threadpool(clients.revoke_consent, who, consent_id)
        except Upstream as exc:
            return await patient_page(request, who, exc.status,
                                      consent_error=f"The permission could not be withdrawn: {exc.detail}.")
        return RedirectResponse(f"/me?done={'revoked' if applied else 'revoke_pending'}#consents", status_code=303)

    @app.post("/me/consents/{consent_id}/confirm", response_model=None)
    async def confirm_consent(consent_id: str, request: Request,
                              sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        """The patient confirms a permission their hospital recorded for them: only now is it in force."""
        who = await poster(request, sid, "patient")
        if isinstance(who, Response):
            return who
        try:
            own = await run_in_threadpool(clients.my_consents, who)
            if consent_id not in consents.confirmable_ids(consents.consent_rows(own, registry)):
                return await patient_page(request, who, 404, consent_error=(
                    "That permission is not one waiting for your confirmation; nothing was changed."))
            await run_in_threadpool(clients.confirm_consent, who, consent_id)
        except Upstream as exc:
            return await patient_page(request, who, exc.status,
                                      consent_error=f"The permission could not be confirmed: {exc.detail}.")
        return RedirectResponse("/me?done=confirmed#consents", status_code=303)

    @app.post("/me/care", response_model=None)
    async def grant_care(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        """The patient's own grant: a hospital may treat them (a care relationship that expires)."""
        who = await poster(request, sid, "patient")
        if isinstance(who, Response):
            return who
        hospital = " ".join((await form_fields(request)).get("hospital", [])).strip()
        if hospital not in {h["id"] for h in consents.hospitals(registry)}:
            return await patient_page(request, who, 400, care_error="Choose a hospital from the list.")
        try:
            await run_in_threadpool(clients.grant_care, who, hospital)
        except Upstream as exc:
            return await patient_page(request, who, exc.status,
                                      care_error=f"The hospital could not be given access: {exc.detail}.")
        return RedirectResponse("/me?done=care_granted#care", status_code=303)

    @app.get("/me/erase", response_model=None)
    def erase_form(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = signed_in(sid, "patient")
        if who is None:
            return RedirectResponse("/", status_code=303)
        return page(request, "erase.html", who=who, phrase=consents.ERASE_PHRASE)

    @app.post("/me/erase", response_model=None)
    async def erase(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = await poster(request, sid, "patient")
        if isinstance(who, Response):
            return who
        typed = " ".join((await form_fields(request)).get("confirm", []))
        if not consents.erase_confirmed(typed):
            return page(request, "erase.html", status=400, who=who, phrase=consents.ERASE_PHRASE,
                        erase_error=f'Nothing was deleted: type exactly "{consents.ERASE_PHRASE}" to confirm.')
        try:
            await run_in_threadpool(clients.erase_me, who)
        except Upstream as exc:
            return page(request, "erase.html", status=exc.status, who=who, phrase=consents.ERASE_PHRASE,
                        erase_error=f"Your records could not be deleted: {exc.detail}.")
        return RedirectResponse("/me", status_code=303)  # the page says so once records answers 410

    @app.get("/me/records.json", response_model=None)
    def me_records(sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Any:
        who = signed_in(sid, "patient")
        if who is None:
            return Response(status_code=401)
        try:
            return clients.my_records(who)
        except Upstream as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.get("/me/access.json", response_model=None)
    def me_access(sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Any:
        who = signed_in(sid, "patient")
        if who is None:
            return Response(status_code=401)
        try:
            return clients.my_access(who)
        except Upstream as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)

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
    async def regulator_verify(request: Request,
                               sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = await poster(request, sid, "regulator")
        if isinstance(who, Response):
            return who
        return await run_in_threadpool(verify_page, request, who)

    def verify_page(request: Request, who: Principal) -> Response:
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
