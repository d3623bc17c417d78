"""Portal: the browser front for patients and regulators (port 8000).

It calls records and audit with its own organisation key; only the portal's
key may carry a ``patient`` claim, so a patient can only ever see their own
records and their own access trail.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from services.portal.config import PortalSettings

INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>healthgov</title></head>
<body>
<h1>healthgov</h1>
<p>Your health records, who looked at them, and who may use them.</p>
<ul>
<li>Records API: <a href="{records}/docs">{records}/docs</a></li>
<li>Audit log: <a href="{audit}/checkpoint">{audit}/checkpoint</a></li>
</ul>
</body></html>
"""


def create_app(settings: PortalSettings | None = None) -> FastAPI:
    settings = settings or PortalSettings()
    app = FastAPI(title="healthgov portal", version="1.0")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return INDEX.format(records=settings.records_url, audit=settings.audit_url)

    return app
