"""HTTP routes of population analytics: ``POST /analytics/query`` and ``GET /analytics/notifiable``.

The body is a query (``query.py``); the answer is JSON counts after
disclosure control, with ``X-Healthgov-Event-Id`` naming the audit event
published before it left and ``X-Healthgov-Cached: true`` when an identical
earlier question was answered again. ``GET /analytics/notifiable`` is the
named query of notifiable-disease counts per district and ISO week
(``notifiable.py``: ``since``, ``until``, ``disease``, ``district``), answered
and audited the same way.
"""

from __future__ import annotations

import logging
import threading
import time

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from services.adapters.web import CallerDep, json_body
from services.contracts import errors
from services.records.analytics.service import Analytics, Answer
from services.records.authority import AuthorityReader

log = logging.getLogger(__name__)


def install_analytics_routes(app: FastAPI, analytics: Analytics, authority: AuthorityReader) -> None:
    @app.post("/analytics/query", openapi_extra=json_body("application/json"))
    async def analytics_query(request: Request, caller: CallerDep) -> Response:
        try:
            doc = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise errors.Invalid("the body is not valid JSON", code="structure") from exc
        answer = await run_in_threadpool(analytics.ask, caller, authority(request, caller), doc)
        return _answered(answer)

    @app.get("/analytics/notifiable")
    async def notifiable_counts(request: Request, caller: CallerDep) -> Response:
        params: dict[str, list[str]] = {}
        for name, value in request.query_params.multi_items():
            params.setdefault(name, []).append(value)
        answer = await run_in_threadpool(analytics.ask_notifiable, caller, authority(request, caller), params)
        return _answered(answer)


def _answered(answer: Answer) -> Response:
    return Response(answer.body, media_type="application/json",
                    headers={errors.EVENT_HEADER: answer.event_id,
                             "X-Healthgov-Cached": "true" if answer.cached else "false"})


class Refresher:
    """Brings the store up to date every ``interval`` seconds, so that a query seldom waits for an update."""

    def __init__(self, analytics: Analytics, interval: float) -> None:
        self.analytics = analytics
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="analytics-refresh", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            started = time.monotonic()
            try:
                self.analytics.store.update()
            except Exception:  # a failed update is retried at the next tick and before every query
                log.exception("analytic store update failed after %.1fs",
                                                      time.monotonic() - started)
