"""The patient's records in plain words, and the copies they take away (FHIR Bundle, printable PDF).

Every byte comes through records' audited patient read (``$everything`` with
the portal's ``patient`` claim): the page is one look at the patient's own
records (a ``disclosure`` the trail counts in "you viewed your own records"),
each download a ``download`` event of its own that the trail lists with its
format. Nothing is cached here: a copy is exactly what records released and
audited for that request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import Cookie, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from services.portal import i18n, readable, record_pdf
from services.portal.accounts import Principal
from services.portal.clients import PortalClients, Upstream
from services.portal.guards import SignedIn

COOKIE = "healthgov_session"
WITHHELD_URL = "https://healthgov.example/withheld"  # records' Bundle.meta extension (records/render.py)
FHIR_JSON = "application/fhir+json"


def withheld_count(bundle: dict[str, Any]) -> int:
    """How many records records left out of the Bundle (sensitive labels, refusals), from its meta extension."""
    meta = bundle.get("meta") if isinstance(bundle.get("meta"), dict) else {}
    return sum(int(e.get("valueInteger") or 0) for x in meta.get("extension") or []
               if isinstance(x, dict) and x.get("url") == WITHHELD_URL for e in x.get("extension") or []
               if isinstance(e, dict))


@dataclass
class RecordViews:
    """The record page's content and the copies, for a principal: the patient, or a guardian acting for a child."""

    clients: PortalClients
    registry: dict[str, Any]
    error_page: Callable[[Request, int], Response]
    tr: Callable[..., str]

    def context(self, request: Request, who: Principal) -> dict[str, Any]:
        """The sections in words, or why there are none, in words."""
        try:
            bundle = self.clients.my_records(who)
        except Upstream as exc:
            if exc.status == 410:
                return {"erased": True, "sections": []}
            return {"sections": [], "records_error": self.tr(request, "Your records cannot be shown right now "
                                                                      "(%(detail)s).", detail=exc.detail)}
        sections = readable.readable_record(bundle)
        return {"sections": sections, "hospitals": readable.hospitals_of(sections),
                "withheld": withheld_count(bundle), "status_words": readable.STATUS_WORDS,
                "interpretation_words": readable.INTERPRETATION_WORDS,
                "criticality_words": readable.CRITICALITY_WORDS}

    def copy(self, request: Request, who: Principal, fmt: str) -> Response:
        """The whole record as a file (``fhir`` or ``pdf``); records audits it as a ``download``."""
        try:
            raw = self.clients.my_record_copy(who, fmt)
        except Upstream as exc:
            return self.error_page(request, exc.status if exc.status in (401, 403, 404, 410, 429) else 503)
        stamp = datetime.now(UTC).astimezone(i18n.TIMEZONE).strftime("%Y%m%d-%H%M")
        if fmt == "fhir":
            return Response(raw, media_type=FHIR_JSON, headers={
                "Content-Disposition": f'attachment; filename="healthgov-record-{stamp}.json"',
                "Cache-Control": "no-store"})
        try:
            pdf = record_pdf.render(orjson.loads(raw), lang=i18n.negotiate(request), registry=self.registry)
        except record_pdf.FontMissing:
            return self.error_page(request, 503)
        return Response(pdf, media_type="application/pdf", headers={
            "Content-Disposition": f'attachment; filename="healthgov-record-{stamp}.pdf"',
            "Cache-Control": "no-store"})


def install(app: FastAPI, *, views: RecordViews, signed_in: SignedIn,
            page: Callable[..., Response]) -> None:
    """Add ``/me/records`` and its two downloads to the portal (one line in ``app.py``)."""

    @app.get("/me/records", response_model=None)
    async def my_records(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        """The record in words, grouped current/past; one audited look at the patient's own records."""
        who = signed_in(sid, "patient")
        if who is None:
            return RedirectResponse("/", status_code=303)
        ctx = await run_in_threadpool(views.context, request, who)
        return page(request, "records.html", who=who, base="/me", **ctx)

    async def copy(request: Request, sid: str | None, fmt: str) -> Response:
        who = signed_in(sid, "patient")
        if who is None:
            return RedirectResponse("/", status_code=303)
        return await run_in_threadpool(views.copy, request, who, fmt)

    @app.get("/me/records/fhir", response_model=None)
    async def fhir_copy(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        """Everything as the FHIR Bundle (searchset) records released; audited as a ``download`` (fhir)."""
        return await copy(request, sid, "fhir")

    @app.get("/me/records/pdf", response_model=None)
    async def pdf_copy(request: Request, sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        """Everything as a printable PDF in the reader's language; audited as a ``download`` (pdf)."""
        return await copy(request, sid, "pdf")
