"""The patient's e-mail settings for notices: give, change or remove the address (``/me/notify``).

The page shows the address masked and the state of the latest e-mails
(sent, waiting, failed) without naming what they reported. Forms are checked
like every other patient form (``app.poster``: same origin, signed in, the
session's synchroniser token).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Cookie, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from services.portal import i18n
from services.portal.accounts import Principal
from services.portal.guards import Poster, SignedIn
from services.portal.i18n import N_
from services.portal.notify import Contacts, InvalidAddress, masked

COOKIE = "healthgov_session"
DONE = {
    "saved": N_("Your address is saved. New messages will be sent to it."),
    "removed": N_("Your address is removed. No more e-mail will be sent."),
}
DELIVERY_WORDS = {"pending": N_("waiting to be sent"), "sending": N_("being sent"), "sent": N_("sent"),
                  "failed": N_("could not be sent")}


def install(app: FastAPI, *, contacts: Contacts, channel: str, page: Callable[..., HTMLResponse],
            poster: Poster,
            signed_in: SignedIn, tr: Callable[..., str],
            form_fields: Callable[[Request], Awaitable[dict[str, list[str]]]]) -> None:
    """Add the e-mail settings' routes; the helpers are the portal's own (``app.py``)."""

    def settings_page(request: Request, who: Principal, status: int = 200, **extra: Any) -> HTMLResponse:
        current = contacts.get(who.username)
        sent = sorted(contacts.deliveries(who.username).values(), key=lambda d: d.pk or 0, reverse=True)[:10]
        return page(request, "notify.html", status=status, who=who, enabled=channel != "none",
                    address=masked(current[0]) if current else None,
                    mail_lang=current[1] if current else i18n.negotiate(request),
                    deliveries=[{"state": d.state, "at": d.delivered_at or d.next_attempt_at} for d in sent],
                    delivery_words=DELIVERY_WORDS, **extra)

    @app.get("/me/notify", response_model=None)
    async def notify_settings(request: Request, done: str | None = None,
                              sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = signed_in(sid, "patient")
        if who is None:
            return RedirectResponse("/", status_code=303)
        return await run_in_threadpool(settings_page, request, who, notice=DONE.get(done or ""))

    @app.post("/me/notify", response_model=None)
    async def notify_save(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = await poster(request, sid, "patient")
        if isinstance(who, Response):
            return who
        form = await form_fields(request)
        address = " ".join(form.get("address", [])).strip()
        lang = " ".join(form.get("mail_lang", []))
        if lang not in i18n.LOCALES:
            lang = i18n.DEFAULT
        try:
            await run_in_threadpool(contacts.set, who.username, address, lang)
        except InvalidAddress:
            return await run_in_threadpool(settings_page, request, who, 400,
                                           form_error=tr(request, "This is not an e-mail address. Check it and "
                                                                  "try again."))
        return RedirectResponse("/me/notify?done=saved", status_code=303)

    @app.post("/me/notify/remove", response_model=None)
    async def notify_remove(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        who = await poster(request, sid, "patient")
        if isinstance(who, Response):
            return who
        await run_in_threadpool(contacts.remove, who.username)
        return RedirectResponse("/me/notify?done=removed", status_code=303)
