"""The regulator's oversight console: pages over the oversight service's API (docs/architecture.md §14).

Hospitals ranked by score (sortable, CSV), a page per hospital with charts,
the anomaly flags, the break-glass review queue, the audit search and the
notifiable-disease counts per district and week. The portal computes
nothing: every number comes from the oversight API (or, for the notifiable
diseases, records' analytics, already disclosure-controlled), called with the
signed-in regulator's token, and that service asks OPA. Charts are
drawn by Chart.js, which the portal serves itself (``deploy/setup.sh`` fetches
it from the npm registry into ``.cache/chartjs``): hospital and government
networks are often closed to CDNs. The page's own script is a static file as
well, so the Content-Security-Policy allows scripts from this origin only.

Visible strings are written for translation (``_()`` and ``{% trans %}``) and
rendered in the portal's language environments (``i18n.negotiate``); an
environment without a catalogue gets null translations.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
from fastapi import Cookie, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from services.adapters.config import REPO_ROOT
from services.portal import i18n
from services.portal.accounts import Principal
from services.portal.clients import PortalClients, Upstream
from services.portal.config import PortalSettings
from services.portal.csrf import CsrfTokens
from services.portal.guards import Poster, SignedIn

COOKIE = "healthgov_session"
CHART_JS = REPO_ROOT / ".cache" / "chartjs" / "package" / "dist" / "chart.umd.js"
CHARTS = Path(__file__).with_name("static") / "oversight-charts.js"
NOTIFIABLE_CHARTS = Path(__file__).with_name("static") / "notifiable-charts.js"
NOTIFIABLE_PARAMS = ("since", "until", "district", "disease")
COLUMNS = ("rank", "hospital", "score", "volume", "coverage", "timeliness", "rejection_rate", "completeness",
           "validity", "open_flags", "overdue_reviews")
PURPOSES = ("TREAT", "ETREAT", "PUBHLTH", "HLEGAL", "HCOMPL", "HRESCH", "HPAYMT", "HMARKT", "PATRQT")
KINDS = ("disclosure", "denial", "break_glass", "break_glass_review", "consent", "erasure", "ingest", "referral",
         "care_relationship", "key_rotation", "download")
CSP = "default-src 'self'; style-src 'unsafe-inline'"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_.]{0,63}$")  # an organisation or event id, never a path


def _i18n(templates: Jinja2Templates) -> None:
    """Translations for ``_()``/``{% trans %}``: the portal's own when installed, else null ones."""
    env = templates.env
    if "jinja2.ext.InternationalizationExtension" not in env.extensions:
        env.add_extension("jinja2.ext.i18n")
    if "gettext" not in env.globals:
        env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]


class OversightClient:
    """The oversight API, as the signed-in regulator."""

    def __init__(self, settings: PortalSettings, clients: PortalClients) -> None:
        self.base = settings.oversight_url
        self.clients = clients
        self.http = httpx.Client(timeout=60)

    def send(self, who: Principal, method: str, path: str, *, params: dict[str, Any] | None = None,
             body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.clients.token_for(who, 'oversight')}"}
        try:
            resp = self.http.request(method, self.base + path, json=body, headers=headers,
                                     params={k: v for k, v in (params or {}).items() if v not in (None, "")})
        except httpx.HTTPError as exc:
            raise Upstream(503, "the oversight service is unavailable") from exc
        if resp.status_code >= 400:
            try:
                detail = str(resp.json().get("detail", resp.reason_phrase))
            except ValueError:
                detail = resp.reason_phrase
            raise Upstream(resp.status_code, detail)
        return resp

    def get(self, who: Principal, path: str, **params: Any) -> Any:
        return self.send(who, "GET", path, params=params).json()


def _withheld(rows: list[dict[str, Any]], measure: str) -> dict[str, int]:
    """How many cells of a disease's chart are gaps, by the reason disclosure control gave."""
    key = "rate_suppressed" if measure == "rate" else "suppressed"
    out: dict[str, int] = {}
    for row in rows:
        if row.get(key):
            out[row[key]] = out.get(row[key], 0) + 1
    return out


def _error_json(detail: str) -> bytes:
    return json.dumps({"detail": detail}).encode()


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}%"


def install(app: FastAPI, *, settings: PortalSettings, clients: PortalClients,
            templates: dict[str, Jinja2Templates], tokens: CsrfTokens, signed_in: SignedIn, poster: Poster) -> None:
    """Add the console's routes to the portal (one line in ``app.py``); ``templates``: one per language."""
    for env in templates.values():
        _i18n(env)
        env.env.filters["pct"] = _pct
    api = OversightClient(settings, clients)

    def page(request: Request, name: str, sid: str | None, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("csrf_token", tokens.for_session(sid))
        ctx.setdefault("here", request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        lang = i18n.negotiate(request)
        resp = templates[lang].TemplateResponse(request, f"oversight/{name}", ctx, status_code=status)
        resp.headers.update({"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Cache-Control": "no-store",
                             "Referrer-Policy": "same-origin", "Content-Language": i18n.HTML_LANG[lang],
                             "Vary": "Accept-Language, Cookie"})
        return resp

    def regulator(sid: str | None) -> Principal | None:
        return signed_in(sid, "regulator")

    def shown(request: Request, sid: str | None, name: str, load: Any) -> Response:
        who = regulator(sid)
        if who is None:
            return RedirectResponse("/", status_code=303)
        try:
            ctx = load(who)
        except Upstream as exc:
            return page(request, name, sid, status=exc.status if exc.status < 500 else 503, who=who,
                        error=f"{exc.detail}", **{"failed": True})
        return page(request, name, sid, who=who, **ctx)

    @app.get("/oversight", response_model=None)
    def hospitals(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        q = request.query_params
        sort = q.get("sort") if q.get("sort") in COLUMNS else "rank"
        order = q.get("order") if q.get("order") in ("asc", "desc") else None

        def load(who: Principal) -> dict[str, Any]:
            data = api.get(who, "/hospitals", sort=sort, order=order, since=q.get("since"), until=q.get("until"))
            csv = "/oversight/hospitals.csv?" + urlencode({"sort": sort, **({"order": order} if order else {})})
            return {"rows": data["hospitals"], "since": data["since"][:10], "until": data["until"][:10],
                    "sort": sort, "order": order, "columns": COLUMNS, "csv": csv}

        return shown(request, sid, "hospitals.html", load)

    @app.get("/oversight/hospitals.csv", response_model=None)
    def hospitals_csv(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = regulator(sid)
        if who is None:
            return RedirectResponse("/", status_code=303)
        q = request.query_params
        try:
            resp = api.send(who, "GET", "/hospitals", params={"format": "csv", "sort": q.get("sort") or "rank",
                                                               "order": q.get("order")})
        except Upstream as exc:
            return Response(exc.detail, status_code=exc.status, media_type="text/plain")
        return Response(resp.content, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="hospitals.csv"'})

    @app.get("/oversight/hospitals/{hospital}", response_model=None)
    def hospital(hospital: str, request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        if not _ID.match(hospital) or ".." in hospital:
            return Response("no such hospital", status_code=404)

        def load(who: Principal) -> dict[str, Any]:
            data = api.get(who, f"/hospitals/{hospital}")
            flags = api.get(who, "/anomalies", hospital=hospital, per_page=20)
            reviews = api.get(who, "/reviews", hospital=hospital, per_page=20)
            return {"h": data, "m": data["metrics"], "flags": flags["flags"], "reviews": reviews["reviews"],
                    "chart": {"days": data["days"], "reasons": data["reasons"][:10], "access": data["access"]}}

        return shown(request, sid, "hospital.html", load)

    @app.get("/oversight/anomalies", response_model=None)
    def anomalies(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        q = request.query_params
        page_no = int(q["page"]) if q.get("page", "").isdigit() else 1

        def load(who: Principal) -> dict[str, Any]:
            data = api.get(who, "/anomalies", hospital=q.get("hospital"), rule=q.get("rule"), page=page_no,
                           per_page=50)
            return {"data": data, "filters": {"hospital": q.get("hospital") or "", "rule": q.get("rule") or ""}}

        return shown(request, sid, "anomalies.html", load)

    @app.get("/oversight/reviews", response_model=None)
    def reviews(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        q = request.query_params
        state = q.get("state") if q.get("state") in ("open", "overdue", "justified", "not_justified", "all") else "open"

        def load(who: Principal) -> dict[str, Any]:
            return {"data": api.get(who, "/reviews", state=state, per_page=200), "state": state,
                    "done": q.get("done") == "1"}

        return shown(request, sid, "reviews.html", load)

    @app.post("/oversight/reviews/{event_id}", response_model=None)
    async def judge(event_id: str, request: Request,
                    sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = await poster(request, sid, "regulator")
        if isinstance(who, Response):
            return who
        form = await request.form()
        if not _ID.match(event_id):
            return Response("no such break-glass access", status_code=404)
        verdict, note = form.get("verdict"), form.get("note") or ""
        if verdict not in ("justified", "not_justified") or not isinstance(note, str):
            return RedirectResponse("/oversight/reviews", status_code=303)
        try:
            await run_in_threadpool(api.send, who, "POST", f"/reviews/{event_id}",
                                    body={"verdict": verdict, "note": note[:2000]})
        except Upstream as exc:
            return page(request, "reviews.html", sid, status=exc.status if exc.status < 500 else 503, who=who,
                        error=exc.detail, data={"reviews": [], "total": 0}, state="open", done=False)
        return RedirectResponse("/oversight/reviews?done=1", status_code=303)

    @app.get("/oversight/complaints", response_model=None)
    def complaints(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        """Patients' reports about accesses: open ones oldest first, each with the access and an answer form."""
        q = request.query_params
        state = q.get("state") if q.get("state") in ("open", "answered", "all") else "open"

        def load(who: Principal) -> dict[str, Any]:
            return {"data": api.get(who, "/complaints", state=state, per_page=200), "state": state,
                    "done": q.get("done") == "1"}

        return shown(request, sid, "complaints.html", load)

    @app.post("/oversight/complaints/{complaint_id}", response_model=None)
    async def answer(complaint_id: str, request: Request,
                     sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        """The regulator's answer to one report: checked like every form, then oversight asks OPA and audits."""
        who = await poster(request, sid, "regulator")
        if isinstance(who, Response):
            return who
        form = await request.form()
        if not _ID.match(complaint_id):
            return Response("no such complaint", status_code=404)
        text = form.get("answer")
        if not isinstance(text, str) or not text.strip():
            return RedirectResponse("/oversight/complaints", status_code=303)
        try:
            await run_in_threadpool(api.send, who, "POST", f"/complaints/{complaint_id}/answer",
                                    body={"answer": text.strip()[:2000]})
        except Upstream as exc:
            return page(request, "complaints.html", sid, status=exc.status if exc.status < 500 else 503, who=who,
                        error=exc.detail, data={"complaints": [], "total": 0}, state="open", done=False)
        return RedirectResponse("/oversight/complaints?done=1", status_code=303)

    @app.get("/oversight/audit", response_model=None)
    def audit(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        q = request.query_params
        keys = ("hospital", "accessor", "patient", "purpose", "kind", "since", "until")
        filters = {k: (q.get(k) or "")[:200] for k in keys}
        page_no = int(q["page"]) if q.get("page", "").isdigit() and len(q["page"]) < 7 else 1

        def load(who: Principal) -> dict[str, Any]:
            data = api.get(who, "/audit/events", page=page_no, per_page=50, **filters)
            base = {k: v for k, v in filters.items() if v}
            return {"data": data, "filters": filters, "purposes": PURPOSES, "kinds": KINDS,
                    "prev": urlencode({**base, "page": page_no - 1}) if page_no > 1 else None,
                    "next": urlencode({**base, "page": page_no + 1}) if page_no < data["pages"] else None,
                    "csv": "/oversight/audit.csv?" + urlencode({**base, "page": page_no})}

        return shown(request, sid, "audit.html", load)

    @app.get("/oversight/audit.csv", response_model=None)
    def audit_csv(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = regulator(sid)
        if who is None:
            return RedirectResponse("/", status_code=303)
        params = {k: v[:200] for k, v in request.query_params.items()
                  if k in ("hospital", "accessor", "patient", "purpose", "kind", "since", "until", "page")}
        try:
            resp = api.send(who, "GET", "/audit/events", params={**params, "format": "csv", "per_page": 500})
        except Upstream as exc:
            return Response(exc.detail, status_code=exc.status, media_type="text/plain")
        return Response(resp.content, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="audit-events.csv"'})

    def notifiable_params(request: Request) -> dict[str, str]:
        """The page's filters as records takes them (dates, districts comma-separated); records checks them."""
        return {k: v[:500] for k, v in request.query_params.items() if k in NOTIFIABLE_PARAMS and v.strip()}

    @app.get("/oversight/notifiable", response_model=None)
    def notifiable(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        """A chart per notifiable disease: weeks across, a line per district, withheld cells as gaps."""
        params = notifiable_params(request)
        measure = "rate" if request.query_params.get("measure") == "rate" else "count"
        lang = i18n.negotiate(request)

        def load(who: Principal) -> dict[str, Any]:
            data = clients.notifiable(who, params).json()
            for d in data["diseases"]:
                d["label"] = d["name"].get(lang) or d["name"].get("en") or d["id"]
                d["withheld"] = _withheld(d["rows"], measure)
            chart = {"measure": measure, "weeks": data["weeks"], "districts": data["districts"],
                     "diseases": [{"id": d["id"], "rows": d["rows"]} for d in data["diseases"]]}
            return {"data": data, "chart": chart, "measure": measure, "filters": params,
                    "json": "/oversight/notifiable.json" + (f"?{urlencode(params)}" if params else "")}

        return shown(request, sid, "notifiable.html", load)

    @app.get("/oversight/notifiable.json", response_model=None)
    def notifiable_json(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        """The same answer as records released it (the audited bytes), for the regulator's own tools."""
        who = regulator(sid)
        if who is None:
            return RedirectResponse("/", status_code=303)
        try:
            resp = clients.notifiable(who, notifiable_params(request))
        except Upstream as exc:
            return Response(_error_json(exc.detail), status_code=exc.status if exc.status < 500 else 503,
                            media_type="application/json")
        return Response(resp.content, media_type="application/json", headers={"Cache-Control": "no-store"})

    @app.get("/static/oversight/notifiable.js", include_in_schema=False)
    def notifiable_js() -> FileResponse:
        return FileResponse(NOTIFIABLE_CHARTS, media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    @app.get("/static/oversight/chart.umd.js", include_in_schema=False, response_model=None)
    def chart_js() -> Response:
        if not CHART_JS.exists():
            return Response("Chart.js is not installed (run deploy/setup.sh)", status_code=404)
        return FileResponse(CHART_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/static/oversight/charts.js", include_in_schema=False)
    def charts_js() -> FileResponse:
        return FileResponse(CHARTS, media_type="text/javascript", headers={"Cache-Control": "no-cache"})
