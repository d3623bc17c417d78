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

import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
import jinja2
import orjson
from fastapi import Cookie, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.adapters.auth import load_registry
from services.adapters.keys import PlatformKeys
from services.adapters.telemetry import install_telemetry
from services.adapters.web import install_error_handlers
from services.contracts import vocabulary
from services.portal import (
    complaint_pages,
    consents,
    guards,
    i18n,
    notify_pages,
    oversight,
    proxy_pages,
    record_pages,
    views,
    words,
)
from services.portal.accounts import Accounts, Principal
from services.portal.clients import PortalClients, Upstream
from services.portal.config import PortalSettings
from services.portal.csrf import FIELD, HEADER, LOGIN_COOKIE, CsrfTokens
from services.portal.i18n import N_
from services.portal.mail import SmtpChannel
from services.portal.notify import Contacts, DeliveryWorker
from services.portal.proxies import Proxies
from services.portal.reauth import Reauthentication
from services.portal.throttle import SignInThrottle
from services.tlog.client import AuditClient
from services.tlog.verify import verify_log

COOKIE = "healthgov_session"
ORG_TYPES = list(vocabulary.ORG_TYPES)
KINDS = list(vocabulary.AUDIT_KINDS)
# What the patient page says after a change (the redirect carries only the key).
NOTICES = {
    "granted": N_("Your choice is saved and in force."),
    "pending": N_("Your choice is saved; it takes effect within a few seconds."),
    "revoked": N_("The permission is withdrawn."),
    "revoke_pending": N_("The permission is withdrawn; this takes effect within a few seconds."),
    "confirmed": N_("You confirmed the permission; it is in force."),
    "care_granted": N_("The hospital may now treat you and read your records."),
}
TRAIL_PER_PAGE = 20
# How long a page waits for the next signed checkpoint to cover a fresh event (audit signs every few seconds),
# so that the newest access verifies on the first look rather than after a reload.
RECEIPT_WAIT_S = 7.0
ERROR_WORDS = {
    400: N_("The request could not be understood. Go back and try again."),
    401: N_("Please sign in first."),
    403: N_("This is not something you may do."),
    404: N_("There is no such page."),
    405: N_("This page cannot be used that way."),
    413: N_("What you sent is too large."),
    422: N_("Some information in the form is missing or not valid. Go back and check it."),
    429: N_("Too many attempts. Please wait a little and try again."),
    503: N_("A part of healthgov is not available right now. Please try again shortly."),
}


def _templates(lang: str, registry: dict[str, Any]) -> Jinja2Templates:
    """One template environment per language, with its catalogue and its clock installed."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                             autoescape=True, extensions=["jinja2.ext.i18n"])
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(
        lang=lang, html_lang=i18n.HTML_LANG[lang], languages=i18n.LOCALES,
        when=lambda value, seconds=False: i18n.local_time(value, lang, seconds=seconds),
        day=i18n.local_date, org=lambda org_id: words.org_name(registry, org_id, lang),
        kind_words=vocabulary.AUDIT_KINDS, own_kind_words=vocabulary.OWN_AUDIT_KINDS,
        reason_words={**vocabulary.REASONS, **vocabulary.DENY_REASONS_TO_PATIENT},
        org_type_words=consents.ORG_TYPE_WORDS,
        purpose_words={**consents.OTHER_PURPOSES, **consents.PURPOSES},
        record_words={**words.MORE_RECORD_KINDS, **consents.RECORD_TYPES},
        notice_words=consents.NOTICE_WORDS, access_filters=words.ACCESS_FILTERS,
        condition_status=words.CONDITION_STATUS)
    env.policies["ext.i18n.trimmed"] = True  # a message's line breaks and indentation are not part of it
    return Jinja2Templates(env=env)


def create_app(settings: PortalSettings | None = None) -> FastAPI:
    settings = settings or PortalSettings()
    keys = PlatformKeys(settings.state_dir)
    accounts = Accounts(settings.store_url, keys.portal_key())
    proxies = Proxies(accounts.engine, keys.portal_key())
    clients = PortalClients(settings, keys)
    registry = load_registry(settings.registry_file)
    templates = {lang: _templates(lang, registry) for lang in i18n.LOCALES}
    tokens = CsrfTokens(keys.portal_key())
    throttle = SignInThrottle(account_limit=settings.signin_account_failures,
                              account_window_s=settings.signin_account_window_s,
                              address_limit=settings.signin_address_failures,
                              address_window_s=settings.signin_address_window_s)
    contacts = Contacts(accounts, keys.portal_key())
    reauth = Reauthentication(accounts, settings.reauth_window_s)
    worker = None
    if settings.channel == "smtp":
        worker = DeliveryWorker(contacts, clients.my_notices, SmtpChannel(
            settings.smtp_host, settings.relay_port, starttls=settings.smtp_starttls,
            username=settings.smtp_username, password=settings.smtp_password),
            sender=settings.mail_from, portal_url=settings.public_url or settings.portal_url,
            max_attempts=settings.notify_max_attempts, backoff_s=settings.notify_backoff_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if worker is not None:
            worker.start(settings.notify_interval_s)
        yield
        if worker is not None:
            worker.stop()

    app = FastAPI(title="healthgov portal", version="1.0", lifespan=lifespan)
    app.state.accounts = accounts
    install_error_handlers(app, fhir=False)

    def tr(request: Request, message: str, **values: Any) -> str:
        """``message`` in the request's language, with ``%(name)s`` values filled in."""
        text = i18n.translations(i18n.negotiate(request)).gettext(message)
        return text % values if values else text

    def page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("csrf_token", tokens.for_session(request.cookies.get(COOKIE)))
        ctx.setdefault("here", request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        resp = templates[i18n.negotiate(request)].TemplateResponse(request, name, ctx, status_code=status)
        resp.headers["Content-Language"] = i18n.HTML_LANG[i18n.negotiate(request)]
        resp.headers["Vary"] = "Accept-Language, Cookie"
        resp.headers["Content-Security-Policy"] = "default-src 'self'; style-src 'unsafe-inline'"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Cache-Control"] = "no-store"
        # Not the APIs' no-referrer: under it a browser sends `Origin: null` with every form post, and the
        # same-origin check below refuses them all. same-origin still sends nothing to other sites.
        resp.headers["Referrer-Policy"] = "same-origin"
        return resp

    def cross_site() -> Response:
        return Response("cross-site request refused", status_code=403)

    async def form_fields(request: Request) -> dict[str, list[str]]:
        """The posted form as lists of strings: validation, not FastAPI, answers a bad form (400, in words)."""
        form = await request.form()
        return {k: [v for v in form.getlist(k) if isinstance(v, str)] for k in form}

    def same_origin(request: Request) -> bool:
        """Reject cross-site form posts (the cookie is SameSite=Strict as well)."""
        origin = request.headers.get("origin")
        return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"

    def wants_json(request: Request) -> bool:
        return request.url.path.endswith(".json") or request.url.path == "/healthz"

    def error_page(request: Request, status: int, headers: dict[str, str] | None = None) -> Response:
        """A page in words for a person; JSON views keep the platform's ``{"error", "detail"}``."""
        who = accounts.session(request.cookies.get(COOKIE))
        resp = page(request, "error.html", status=status, who=who, status_code=status,
                    message=ERROR_WORDS.get(status, ERROR_WORDS[400] if status < 500 else ERROR_WORDS[503]))
        resp.headers.update(headers or {})
        return resp

    json_http = app.exception_handlers[StarletteHTTPException]
    json_params = app.exception_handlers[RequestValidationError]

    @app.exception_handler(StarletteHTTPException)
    async def _http_page(request: Request, exc: StarletteHTTPException) -> Response:
        if wants_json(request):
            return await json_http(request, exc)  # type: ignore[no-any-return]
        return error_page(request, exc.status_code, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _params_page(request: Request, exc: RequestValidationError) -> Response:
        if wants_json(request):
            return await json_params(request, exc)  # type: ignore[no-any-return]
        return error_page(request, 400)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/lang", response_model=None)
    def choose_language(to: str = "", next: str = "/") -> Response:
        """The language switch: remembered in a cookie for a year; ``next`` must be a path of this portal."""
        target = next if next.startswith("/") and not next.startswith("//") and "\\" not in next else "/"
        resp = RedirectResponse(target, status_code=303)
        if to in i18n.LOCALES:
            resp.set_cookie(i18n.COOKIE, to, max_age=365 * 24 * 3600, httponly=True, samesite="lax",
                            secure=not settings.dev_mode)
        return resp

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
    async def login(request: Request) -> Response:
        if not same_origin(request) or not await token_ok(
                request, tokens.for_sign_in(request.cookies.get(LOGIN_COOKIE))):
            return cross_site()
        form = await form_fields(request)
        username, password = (" ".join(form.get(k, [])) for k in ("username", "password"))
        if not username or not password:
            return sign_in_page(request, status=400, error=tr(request, "Enter your username and password."))
        address = request.client.host if request.client else "unknown"
        wait = throttle.retry_after(username, address)
        if wait:  # refused before the password is even checked: guessing gains nothing
            return sign_in_page(request, status=429, headers={"Retry-After": str(wait)},
                                error=tr(request, "Too many failed sign-ins. Try again in %(wait)s seconds.",
                                         wait=wait))
        who = await run_in_threadpool(accounts.authenticate, username, password)
        if who is None:
            throttle.failed(username, address)
            return sign_in_page(request, status=401, error=tr(request, "Wrong username or password."))
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
        reauth.forget(sid)
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

    def verify_receipts(who: Principal, event_ids: list[str], wait_s: float = RECEIPT_WAIT_S) -> dict[str, Any]:
        """Each event's receipt, fetched through the portal and checked here: signature, then inclusion.

        An event the log has not yet covered by a signed checkpoint is asked for again until the next
        checkpoint (``wait_s``), so the newest access verifies on the first look.
        """
        try:
            vkey = clients.public("/verifier-key").text.strip()
        except Upstream as exc:
            return {e: {"state": "failed", "error": exc.detail} for e in event_ids}

        def one(event_id: str) -> dict[str, Any]:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    result = views.check_receipt(clients.receipt(who, event_id), vkey)
                    return {**result, "state": "verified" if result["ok"] else "failed"}
                except Upstream as exc:
                    if exc.status != 409 or time.monotonic() >= deadline:
                        return {"state": "pending" if exc.status == 409 else "failed", "error": exc.detail}
                time.sleep(0.5)

        with ThreadPoolExecutor(max_workers=4) as pool:
            return dict(zip(event_ids, pool.map(one, event_ids), strict=True))

    def trail_query(request: Request) -> dict[str, Any]:
        """The trail page's filters from its query string; anything unreadable is simply not applied."""
        q = request.query_params
        out: dict[str, Any] = {"from": "", "to": "", "org": "", "access": "", "page": 1}
        for key, parse in (("from", date.fromisoformat), ("to", date.fromisoformat)):
            try:
                out[key] = parse(q.get(key, "")).isoformat() if q.get(key) else ""
            except ValueError:
                out[key] = ""
        out["org"] = q.get("org", "") if q.get("org", "") in registry.get("orgs", {}) else ""
        out["access"] = q.get("access", "") if q.get("access", "") in words.ACCESS_FILTERS or \
            q.get("access") == "state" else ""
        try:
            out["page"] = min(max(int(q.get("page", "1")), 1), 1_000_000)
        except ValueError:
            out["page"] = 1
        return out

    def trail_params(flt: dict[str, Any], per_page: int) -> dict[str, Any]:
        """Audit's ``/trail`` parameters for the page's filters (days are Guiyang days)."""
        def instant(day: str, plus: int = 0) -> str:
            start = datetime.combine(date.fromisoformat(day) + timedelta(days=plus), datetime.min.time(),
                                     tzinfo=i18n.TIMEZONE)
            return start.astimezone(UTC).isoformat().replace("+00:00", "Z")

        params: dict[str, Any] = {"page": flt["page"], "per_page": per_page,
                                  "since": instant(flt["from"]) if flt["from"] else None,
                                  "until": instant(flt["to"], 1) if flt["to"] else None,
                                  "accessor_org": flt["org"] or None}
        if flt["access"] == "state":
            params["org_types"] = sorted(vocabulary.STATE_ORG_TYPES)
        elif flt["access"]:
            params["kinds"] = list(words.ACCESS_FILTERS[flt["access"]][1])
        return params

    def trail_ctx(request: Request, who: Principal, flt: dict[str, Any], per_page: int) -> dict[str, Any]:
        """One page of the trail with its totals and each entry's receipt verified; or the failure in words."""
        try:
            got = clients.my_trail(who, **trail_params(flt, per_page))
        except Upstream as exc:
            return {"trail_error": tr(request, "Your access history cannot be shown right now (%(detail)s).",
                                      detail=exc.detail)}
        rows = views.trail_rows(got["events"])
        receipts = verify_receipts(who, [r["event_id"] for r in rows])
        for r in rows:
            r["receipt"] = receipts.get(r["event_id"], {"state": "failed"})
        return {"trail": rows, "total": got["total"], "pages": got["pages"], "page_no": got["page"],
                "own_views": got["own_views"]}

    def patient_ctx(request: Request, who: Principal) -> dict[str, Any]:
        """Everything the patient page shows; each part says in words when it cannot be had."""
        ctx: dict[str, Any] = {"who": who, "summary": [], "conditions": [], "consents": [],
                               "erased": False, "grantees": consents.third_parties(registry),
                               "purposes": consents.PURPOSES, "record_types": consents.RECORD_TYPES,
                               "default_days": consents.DEFAULT_PERMIT_DAYS, "form": {},
                               "hospitals": consents.hospitals(registry), "notices": [],
                               "children": proxies.children(who.username)}
        try:
            ctx["summary"], ctx["conditions"] = views.record_summary(clients.my_records(who))
        except Upstream as exc:
            if exc.status == 410:
                ctx["erased"] = True
            else:
                ctx["records_error"] = tr(request, "Your records cannot be shown right now (%(detail)s).",
                                          detail=exc.detail)
        if not ctx["erased"]:
            try:
                ctx["consents"] = consents.consent_rows(clients.my_consents(who), registry)
            except Upstream as exc:
                ctx["consents_error"] = tr(request, "Your choices cannot be shown right now (%(detail)s).",
                                           detail=exc.detail)
        try:
            ctx["notices"] = consents.notice_rows(clients.my_notices(who), registry)
        except Upstream as exc:
            ctx["notices_error"] = tr(request, "Your messages cannot be shown right now (%(detail)s).",
                                      detail=exc.detail)
        ctx.update(trail_ctx(request, who, {"from": "", "to": "", "org": "", "access": "", "page": 1}, 5))
        return ctx

    async def patient_page(request: Request, who: Principal, status: int = 200, **extra: Any) -> HTMLResponse:
        ctx = await run_in_threadpool(patient_ctx, request, who)
        return page(request, "patient.html", status=status, **{**ctx, **extra})

    @app.get("/me/access", response_model=None)
    async def access_trail(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        """Who looked at my records: newest first, in pages, filtered, each entry verified against the log."""
        who = signed_in(sid, "patient")
        if who is None:
            return RedirectResponse("/", status_code=303)
        flt = trail_query(request)
        ctx = await run_in_threadpool(trail_ctx, request, who, flt, TRAIL_PER_PAGE)
        base = {k: v for k, v in flt.items() if v and k != "page"}
        ctx["page_link"] = lambda n: "/me/access?" + urlencode({**base, "page": n})
        ctx["orgs"] = sorted(((oid, words.org_name(registry, oid, i18n.negotiate(request)))
                              for oid, o in registry.get("orgs", {}).items()
                              if o.get("type") not in ("court", "ethics_board", "patient")), key=lambda o: o[1])
        return page(request, "access.html", who=who, filters=flt, **ctx)

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
            return await patient_page(request, who, 400, consent_error=tr(request, str(exc)),
                                      form=consents.echo(form))
        try:
            applied = await run_in_threadpool(clients.grant_consent, who, grant.to_fhir(who.subject))
        except Upstream as exc:
            return await patient_page(request, who, exc.status, form=consents.echo(form),
                                      consent_error=tr(request, "Your choice could not be saved: %(detail)s.",
                                                          detail=exc.detail))
        return RedirectResponse(f"/me?done={'granted' if applied else 'pending'}#consents", status_code=303)

    async def change_own_consent(request: Request, sid: str | None, consent_id: str,
                                 eligible: Callable[[list[consents.ConsentRow]], set[str]],
                                 change: Callable[[Principal, str], Any], *, refused: str, failed: str,
                                 done: Callable[[Any], str]) -> Response:
        """Withdraw or confirm a consent: only an ``eligible`` id from the patient's own list goes upstream.

        ``refused`` and ``failed`` are msgids (marked ``N_`` where they are written) put in the reader's
        language here; ``failed`` has a ``%(detail)s`` field for what records answered; ``done`` names the
        page's notice.
        """
        who = await poster(request, sid, "patient")
        if isinstance(who, Response):
            return who
        try:
            own = await run_in_threadpool(clients.my_consents, who)
            if consent_id not in eligible(consents.consent_rows(own, registry)):
                return await patient_page(request, who, 404, consent_error=tr(request, refused))
            applied = await run_in_threadpool(change, who, consent_id)
        except Upstream as exc:
            return await patient_page(request, who, exc.status, consent_error=tr(request, failed, detail=exc.detail))
        return RedirectResponse(f"/me?done={done(applied)}#consents", status_code=303)

    @app.post("/me/consents/{consent_id}/revoke", response_model=None)
    async def revoke_consent(consent_id: str, request: Request,
                             sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        return await change_own_consent(
            request, sid, consent_id, consents.revocable_ids, clients.revoke_consent,
            refused=N_("That permission is not one of yours, or it is already withdrawn; nothing was changed."),
            failed=N_("The permission could not be withdrawn: %(detail)s."),
            done=lambda applied: "revoked" if applied else "revoke_pending")

    @app.post("/me/consents/{consent_id}/confirm", response_model=None)
    async def confirm_consent(consent_id: str, request: Request,
                              sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        """The patient confirms a permission their hospital recorded for them: only now is it in force."""
        return await change_own_consent(
            request, sid, consent_id, consents.confirmable_ids, clients.confirm_consent,
            refused=N_("That permission is not one waiting for your confirmation; nothing was changed."),
            failed=N_("The permission could not be confirmed: %(detail)s."),
            done=lambda _applied: "confirmed")

    @app.post("/me/care", response_model=None)
    async def grant_care(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        """The patient's own grant: a hospital may treat them (a care relationship that expires)."""
        who = await poster(request, sid, "patient")
        if isinstance(who, Response):
            return who
        hospital = " ".join((await form_fields(request)).get("hospital", [])).strip()
        if hospital not in {h["id"] for h in consents.hospitals(registry)}:
            return await patient_page(request, who, 400, care_error=tr(request, "Choose a hospital from the list."))
        try:
            await run_in_threadpool(clients.grant_care, who, hospital)
        except Upstream as exc:
            return await patient_page(request, who, exc.status,
                                      care_error=tr(request, "The hospital could not be given access: %(detail)s.",
                                                          detail=exc.detail))
        return RedirectResponse("/me?done=care_granted#care", status_code=303)

    def erase_page(request: Request, who: Principal, sid: str | None, status: int = 200,
                   headers: dict[str, str] | None = None, **extra: Any) -> HTMLResponse:
        resp = page(request, "erase.html", status=status, who=who, phrase=consents.ERASE_PHRASE,
                    password_needed=not reauth.recent(sid), **extra)
        resp.headers.update(headers or {})
        return resp

    @app.get("/me/erase", response_model=None)
    def erase_form(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = signed_in(sid, "patient")
        if who is None:
            return RedirectResponse("/", status_code=303)
        return erase_page(request, who, sid)

    @app.post("/me/erase", response_model=None)
    async def erase(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        """Erase, after the password again (reauth.py) and the typed phrase; either missing deletes nothing."""
        who = await poster(request, sid, "patient")
        if isinstance(who, Response):
            return who
        form = await form_fields(request)
        if not reauth.recent(sid):
            address = request.client.host if request.client else "unknown"
            wait = throttle.retry_after(who.username, address)
            if wait:
                return erase_page(request, who, sid, 429, {"Retry-After": str(wait)}, erase_error=tr(
                    request, "Too many wrong passwords. Try again in %(wait)s seconds.", wait=wait))
            password = " ".join(form.get("password", []))
            if not password or not await run_in_threadpool(reauth.confirm, sid or "", who.username, password):
                throttle.failed(who.username, address)
                return erase_page(request, who, sid, 401, erase_error=tr(
                    request, "Nothing was deleted: the password is not right."))
        if not consents.erase_confirmed(" ".join(form.get("confirm", []))):
            return erase_page(request, who, sid, 400,
                              erase_error=tr(request, 'Nothing was deleted: type exactly "%(phrase)s" to confirm.',
                                             phrase=consents.ERASE_PHRASE))
        try:
            await run_in_threadpool(clients.erase_me, who)
        except Upstream as exc:
            return erase_page(request, who, sid, exc.status,
                              erase_error=tr(request, "Your records could not be deleted: %(detail)s.",
                                             detail=exc.detail))
        reauth.forget(sid)
        return RedirectResponse("/me", status_code=303)  # the page says so once records answers 410

    def patient_json(sid: str | None, fetch: Callable[[Principal], Any]) -> Any:
        """The signed-in patient's own data as JSON, or the upstream refusal with its status."""
        who = signed_in(sid, "patient")
        if who is None:
            return Response(status_code=401)
        try:
            return fetch(who)
        except Upstream as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.get("/me/records.json", response_model=None)
    def me_records(sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Any:
        return patient_json(sid, clients.my_records)

    @app.get("/me/access.json", response_model=None)
    def me_access(sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Any:
        return patient_json(sid, clients.my_access)

    def regulator_ctx(who: Principal, request: Request) -> dict[str, Any]:
        filters = {k: request.query_params.get(k) or None
                   for k in ("org_type", "purpose", "kind", "outcome", "patient", "cursor")}
        ctx: dict[str, Any] = {"who": who, "filters": filters, "org_types": ORG_TYPES, "kinds": KINDS,
                               "outcomes": vocabulary.OUTCOMES, "events": [], "checkpoint": None}
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
                             "summary": tr(request,
                                           "%(entries)s entries and %(checkpoints)s signed checkpoints verify.",
                                           entries=report.entries, checkpoints=report.checkpoints) if report.ok else
                             tr(request, "%(entries)s entries and %(checkpoints)s signed checkpoints do NOT verify.",
                                entries=report.entries, checkpoints=report.checkpoints)}
        except (httpx.HTTPError, PermissionError) as exc:
            ctx["error"] = tr(request, "The log could not be fetched (%(detail)s).", detail=str(exc))
        finally:
            source.close()
        return page(request, "regulator.html", **ctx)

    async def receipt_view(request: Request, who: Principal, event_id: str, base: str = "") -> Response:
        """One entry's proof, checked here against the log's published key, and the entry in words.

        ``who`` is whose trail the entry is in: the patient, or a guardian acting for a child (``base`` is then
        the guardian's page prefix); audit answers only for events of that patient."""
        result = (await run_in_threadpool(verify_receipts, who, [event_id]))[event_id]
        if result.get("state") == "failed" and "no such event" in str(result.get("error", "")):
            return error_page(request, 404)
        entry = views.trail_rows([orjson.loads(result["event"])])[0] if result.get("event") else None
        return page(request, "receipt.html", who=who, event_id=event_id, result=result, entry=entry, base=base)

    async def receipt_file(request: Request, who: Principal, event_id: str) -> Response:
        """The receipt as a file, through the portal (the audit service wants a token a browser does not have)."""
        try:
            data = await run_in_threadpool(clients.receipt, who, event_id)
        except Upstream as exc:
            return error_page(request, exc.status if exc.status in ERROR_WORDS else 503)
        safe = "".join(ch for ch in event_id if ch.isalnum() or ch == "-")[:64]
        return Response(orjson.dumps(data, option=orjson.OPT_INDENT_2), media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="healthgov-receipt-{safe}.json"'})

    @app.get("/receipts/{event_id}", response_model=None)
    async def receipt(event_id: str, request: Request,
                      sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = accounts.session(sid)
        if who is None:
            return RedirectResponse("/", status_code=303)
        return await receipt_view(request, who, event_id)

    @app.get("/receipts/{event_id}/download", response_model=None)
    async def receipt_download(event_id: str, request: Request,
                               sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = accounts.session(sid)
        if who is None:
            return RedirectResponse("/", status_code=303)
        return await receipt_file(request, who, event_id)

    complaint_pages.install(app, clients=clients, page=page, poster=poster, signed_in=signed_in, tr=tr,
                            form_fields=form_fields, error_page=error_page)
    notify_pages.install(app, contacts=contacts, channel=settings.channel, page=page, poster=poster,
                         signed_in=signed_in, tr=tr, form_fields=form_fields)
    oversight.install(app, settings=settings, clients=clients, templates=templates, tokens=tokens,
                      signed_in=signed_in, poster=poster)
    guards.install(app)
    record_views = record_pages.RecordViews(clients=clients, registry=registry, error_page=error_page, tr=tr)
    record_pages.install(app, views=record_views, signed_in=signed_in, page=page)
    proxy_pages.install(app, proxies=proxies, records=record_views, signed_in=signed_in, page=page,
                        error_page=error_page, trail_ctx=trail_ctx, receipt_view=receipt_view,
                        receipt_file=receipt_file)
    install_telemetry(app, "portal")
    return app
