"""A guardian's pages for a child: the child's records in words, their copies, and their access trail.

Every page starts from the signed-in account and the link id in the path
(``/for/{link}/...``): ``Proxies.acting_for`` turns them into the principal
"this guardian, acting for this child", or into a 404 when the link is not
this account's. Records and audit then see the portal's token for the child
with role ``guardian`` and purpose PWATRNY: the policy lets it read and read
the trail, nothing else (``guardian_reads_only``), and each view is an audit
event naming the guardian, which the child's trail lists as a row of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NamedTuple
from urllib.parse import urlencode

from fastapi import Cookie, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from services.portal import record_pages
from services.portal.accounts import Principal
from services.portal.guards import Refusal, SignedIn
from services.portal.proxies import Child, Proxies

COOKIE = "healthgov_session"
TRAIL_PER_PAGE = 20


class Acting(NamedTuple):
    """A guardian (``who``, signed in) acting for a child: ``proxy`` is the principal records and audit see."""

    who: Principal
    proxy: Principal
    child: Child


def install(app: FastAPI, *, proxies: Proxies, records: record_pages.RecordViews,
            signed_in: SignedIn, page: Callable[..., Response],
            error_page: Callable[[Request, int], Response],
            trail_ctx: Callable[[Request, Principal, dict[str, Any], int], dict[str, Any]],
            receipt_view: Callable[..., Awaitable[Response]],
            receipt_file: Callable[[Request, Principal, str], Awaitable[Response]]) -> None:
    """Add ``/for/{link}/records`` (with its downloads), ``/for/{link}/access`` and the access entries'
    receipts ``/for/{link}/receipts/{event_id}[/download]`` (one line in ``app.py``)."""

    def acting_now(request: Request, sid: str | None, link: str) -> Acting:
        who = signed_in(sid, "patient")
        if who is None:
            raise Refusal(RedirectResponse("/", status_code=303))
        found = proxies.acting_for(who, link)
        if found is None:
            raise Refusal(error_page(request, 404))  # not this account's link: as if there were no such page
        return Acting(who, found[0], found[1])

    async def acting(link: str, request: Request,
                     sid: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Acting:
        """The dependency of every route here: this guardian acting for the child of ``link``, or a Refusal."""
        return await run_in_threadpool(acting_now, request, sid, link)

    # A default, not an ``Annotated`` alias: annotations here are strings, resolved in the module's globals,
    # where this closure's dependency does not exist.
    as_guardian: Any = Depends(acting)

    @app.get("/for/{link}/records", response_model=None)
    async def child_records(link: str, request: Request,
                            got: Acting = as_guardian) -> Response:
        who, proxy, child = got
        ctx = await run_in_threadpool(records.context, request, proxy)
        return page(request, "records.html", who=who, child=child, base=f"/for/{link}", **ctx)

    @app.get("/for/{link}/records/{fmt}", response_model=None)
    async def child_copy(link: str, fmt: str, request: Request, got: Acting = as_guardian) -> Response:
        if fmt not in ("fhir", "pdf"):
            return error_page(request, 404)
        return await run_in_threadpool(records.copy, request, got[1], fmt)

    @app.get("/for/{link}/access", response_model=None)
    async def child_access(link: str, request: Request, got: Acting = as_guardian) -> Response:
        who, proxy, child = got
        try:
            number = min(max(int(request.query_params.get("page", "1")), 1), 1_000_000)
        except ValueError:
            number = 1
        flt = {"from": "", "to": "", "org": "", "access": "", "page": number}
        ctx = await run_in_threadpool(trail_ctx, request, proxy, flt, TRAIL_PER_PAGE)
        return page(request, "proxy_access.html", who=who, child=child, base=f"/for/{link}",
                    page_link=lambda n: f"/for/{link}/access?" + urlencode({"page": n}), **ctx)

    @app.get("/for/{link}/receipts/{event_id}", response_model=None)
    async def child_receipt(link: str, event_id: str, request: Request, got: Acting = as_guardian) -> Response:
        """A proof from the child's trail: asked of audit as the guardian acting for the child."""
        return await receipt_view(request, got[1], event_id, base=f"/for/{link}")

    @app.get("/for/{link}/receipts/{event_id}/download", response_model=None)
    async def child_receipt_download(link: str, event_id: str, request: Request, got: Acting = as_guardian) -> Response:
        return await receipt_file(request, got[1], event_id)
