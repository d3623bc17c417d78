"""Telemetry's rules that need no stack: who may scrape, what a request id may be, what a log line keeps."""

from __future__ import annotations

import io
import logging

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.adapters import telemetry
from services.adapters.web import install_error_handlers
from services.contracts import errors


def app_with_metrics(token: str | None, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    if token is None:
        monkeypatch.delenv("HEALTHGOV_METRICS_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HEALTHGOV_METRICS_TOKEN", token)
    app = FastAPI()
    install_error_handlers(app, fhir=False)

    @app.get("/things/{thing_id}")
    def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    telemetry.install_telemetry(app, "unit")
    return app


def test_metrics_only_for_loopback_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_with_metrics(None, monkeypatch)
    with TestClient(app, client=("127.0.0.1", 50000)) as local:
        assert local.get("/metrics").status_code == 200
    with TestClient(app, client=("10.1.2.3", 50000)) as remote:
        r = remote.get("/metrics")
        assert r.status_code == 403 and "loopback" in r.json()["detail"]


def test_metrics_with_a_token_need_it_from_everyone(monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_with_metrics("s3cret-scrape", monkeypatch)
    for host in ("127.0.0.1", "10.1.2.3"):
        with TestClient(app, client=(host, 50000)) as c:
            assert c.get("/metrics").status_code == 401
            assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"}).status_code == 200


def test_routes_are_counted_by_template_not_path(monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_with_metrics(None, monkeypatch)
    with TestClient(app, client=("127.0.0.1", 50000)) as c:
        assert c.get("/things/patient-4711").status_code == 200
        assert c.get("/no/such/patient-4711").status_code == 404
        text = c.get("/metrics").text
    assert 'route="/things/{thing_id}"' in text and 'route="<unmatched>"' in text
    assert "patient-4711" not in text


def test_request_id_is_kept_only_when_it_is_a_short_token() -> None:
    assert telemetry.request_id_of(b"abc-123.X_y") == "abc-123.X_y"
    for bad in (None, b"", b"x" * 65, b"a b", b"<script>", b"\xff\xfe"):
        made = telemetry.request_id_of(bad)
        assert len(made) == 32 and made != bad


def test_a_logged_traceback_keeps_no_exception_message() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(telemetry.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(telemetry._Context("unit"))
    logger = logging.getLogger("healthgov.test.telemetry")
    logger.addHandler(handler)
    logger.propagate = False
    sent = "".join(["Patient/", "zhang-san-", "110101199003077777"])  # data, not code: not on a source line
    try:
        try:
            raise KeyError(sent)
        except KeyError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    line = orjson.loads(stream.getvalue())
    assert line["service"] == "unit" and "KeyError" in line["exc_info"]
    assert "zhang-san" not in stream.getvalue()


def test_issue_codes_are_a_closed_set() -> None:
    assert telemetry.issue_code("invalid Observation.status") == "invalid"
    assert telemetry.issue_code("Patient/123 something") == "other"
    with pytest.raises(errors.Unauthenticated):
        telemetry.metrics_allowed(type("R", (), {"headers": {}, "client": None})(), SecretStr("t"))  # type: ignore[arg-type]
