""""Report this access": a patient's complaint about one entry of their trail, and its state.

From a trail entry the patient opens a form (``/me/complaints/new?event=…``)
that shows the entry in words, writes why, and sends it; the oversight
service checks that the event is the patient's own (OPA ``complaint_file``),
writes the complaint to the audit log and puts it in the regulator's queue.
``/me/complaints`` lists the patient's reports: open or answered, with the
regulator's answer. The portal shows the entry only if the audit service
gives it to this patient (their own events only), so a foreign event id is a
404 page before anything is sent.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import Cookie, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from services.portal import views
from services.portal.accounts import Principal
from services.portal.clients import PortalClients, Upstream
from services.portal.guards import Poster, SignedIn
from services.portal.i18n import N_

COOKIE = "healthgov_session"
MAX_REASON = 2_000
RECEIPT_WAIT_S = 7.0
_EVENT_ID = re.compile(r"^[A-Za-z0-9\-]{1,64}$")
STATE_WORDS = {"open": N_("waiting for the regulator"), "answered": N_("answered")}
DONE = {"filed": N_("Your report is sent to the health regulator. You can follow it here.")}


def install(app: FastAPI, *, clients: PortalClients, page: Callable[..., HTMLResponse],
            poster: Poster,
            signed_in: SignedIn, tr: Callable[..., str],
            form_fields: Callable[[Request], Awaitable[dict[str, list[str]]]],
            error_page: Callable[..., Response]) -> None:
    """Add the report routes; the helpers are the portal's own (``app.py``)."""

    def entry(who: Principal, event_id: str) -> dict[str, Any] | None:
        """The trail entry in words, as the audit service gives it to this patient; None if not theirs."""
        if not _EVENT_ID.match(event_id):
            return None
        deadline = time.monotonic() + RECEIPT_WAIT_S
        while True:
            try:
                receipt = clients.receipt(who, event_id)
                break
            except Upstream as exc:  # 409: logged, not yet under a signed checkpoint (a few seconds)
                if exc.status != 409 or time.monotonic() >= deadline:
                    return None
            time.sleep(0.5)
        try:
            event = orjson.loads(base64.b64decode(receipt["entry"], validate=True))
        except (KeyError, ValueError, TypeError):
            return None
        return views.trail_rows([event])[0]

    def form_page(request: Request, who: Principal, event_id: str, status: int = 200, **extra: Any) -> Response:
        found = entry(who, event_id)
        if found is None:
            return error_page(request, 404)
        return page(request, "report.html", status=status, who=who, e=found, event_id=event_id,
                    max_reason=MAX_REASON, **extra)

    @app.get("/me/complaints/new", response_model=None)
    async def report_form(request: Request, event: str = "",
                          sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = signed_in(sid, "patient")
        if who is None:
            return RedirectResponse("/", status_code=303)
        return await run_in_threadpool(form_page, request, who, event)

    @app.post("/me/complaints", response_model=None)
    async def report(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = await poster(request, sid, "patient")
        if isinstance(who, Response):
            return who
        form = await form_fields(request)
        event_id = " ".join(form.get("event", [])).strip()
        reason = " ".join(form.get("reason", [])).strip()
        if not reason or len(reason) > MAX_REASON or "\x00" in reason:
            return await run_in_threadpool(
                form_page, request, who, event_id, 400,
                form_error=tr(request, "Write why you report this access (at most %(n)s characters).", n=MAX_REASON))
        if await run_in_threadpool(entry, who, event_id) is None:
            return error_page(request, 404)
        try:
            await run_in_threadpool(clients.file_complaint, who, event_id, reason)
        except Upstream as exc:
            return await run_in_threadpool(
                form_page, request, who, event_id, exc.status if exc.status < 500 else 503,
                form_error=tr(request, "Your report could not be sent: %(detail)s.", detail=exc.detail))
        return RedirectResponse("/me/complaints?done=filed", status_code=303)

    @app.get("/me/complaints", response_model=None)
    async def my_reports(request: Request, done: str | None = None,
                         sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = signed_in(sid, "patient")
        if who is None:
            return RedirectResponse("/", status_code=303)
        ctx: dict[str, Any] = {"complaints": []}
        try:
            ctx["complaints"] = await run_in_threadpool(clients.my_complaints, who)
        except Upstream as exc:
            ctx["list_error"] = tr(request, "Your reports cannot be shown right now (%(detail)s).",
                                   detail=exc.detail)
        return page(request, "complaints.html", who=who, notice=DONE.get(done or ""), state_words=STATE_WORDS,
                    **ctx)
