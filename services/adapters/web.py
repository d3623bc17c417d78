"""What every HTTP service shares: caller authentication and error mapping.

Routes take a ``CallerDep`` and never see a token; domain errors become the
status codes callers expect (401/403 for auth, 503 with Retry-After when the
broker cannot acknowledge or the database cannot be reached).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from services.adapters.auth import Authenticator, AuthError, Caller, bearer, load_registry
from services.adapters.config import PlatformSettings
from services.adapters.kafka import BrokerUnavailable
from services.adapters.keys import PlatformKeys

log = logging.getLogger(__name__)
RETRY_AFTER_S = "5"


def build_authenticator(settings: PlatformSettings, audience: str) -> Authenticator:
    registry = load_registry(settings.registry_file)
    keys = PlatformKeys(settings.state_dir).org_public_keys(list(registry["orgs"]))
    return Authenticator(audience=audience, registry=registry, public_keys=keys,
                         portal_org=settings.portal_org)


async def current_caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    """The verified caller; on the event loop, as a signature check is cheaper than a thread hand-off."""
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator.verify(bearer(authorization))


CallerDep = Annotated[Caller, Depends(current_caller)]


def install_error_handlers(app: FastAPI, fhir: bool = True) -> None:
    """Map auth, broker and database failures; FHIR services answer with OperationOutcome."""

    def outcome(code: str, text: str) -> dict[str, object]:
        if not fhir:
            return {"error": code, "detail": text}
        return {"resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": code, "diagnostics": text}]}

    @app.exception_handler(AuthError)
    async def _auth(_request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        code = "login" if exc.status == 401 else "forbidden"
        return JSONResponse(outcome(code, str(exc)), status_code=exc.status, headers=headers)

    @app.exception_handler(BrokerUnavailable)
    async def _broker(_request: Request, exc: BrokerUnavailable) -> JSONResponse:
        return JSONResponse(outcome("transient", f"event broker unavailable: {exc}"),
                            status_code=503, headers={"Retry-After": RETRY_AFTER_S})

    @app.exception_handler(OperationalError)
    async def _database(_request: Request, exc: OperationalError) -> JSONResponse:
        # The driver's message can quote the statement's parameters: it goes to no one.
        log.warning("database unavailable: %s", type(exc.orig or exc).__name__)
        return JSONResponse(outcome("transient", "database unavailable, try again shortly"),
                            status_code=503, headers={"Retry-After": RETRY_AFTER_S})
