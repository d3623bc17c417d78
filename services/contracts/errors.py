"""healthgov's one error family: every refusal a caller can get, defined once.

A use case raises one of these; each service maps the whole family in one
handler (``services/adapters/web.py``) to an HTTP status, a FHIR issue code
and a message written for the caller. The message is always ours, never the
text of an exception raised somewhere inside (a driver's or a validator's
message can quote data, and is meaningless to a caller anyway). Headers that
belong to the answer (Retry-After, the audit event id) travel with the error.

Pure Python: no web framework, so use cases and adapters raise them freely.
"""

from __future__ import annotations

from typing import Any

EVENT_HEADER = "X-Healthgov-Event-Id"
RETRY_AFTER_S = 5


class HealthgovError(Exception):
    """Base of every error a caller may see; subclasses fix the status and FHIR issue code."""

    status: int = 500
    code: str = "exception"
    default_message: str = "the request could not be completed"

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None,
                 issues: list[dict[str, Any]] | None = None, reasons: list[str] | None = None,
                 status: int | None = None, code: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)
        self.headers = dict(headers or {})
        self._issues = issues
        self.reasons = list(reasons or [])
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def __init_subclass__(cls, *, status: int | None = None, code: str | None = None,
                          message: str | None = None, **kw: Any) -> None:
        """Fix a kind of refusal's status, FHIR issue code and default message in its class line.

        ``class Gone(HealthgovError, status=410, code="deleted", message="gone")`` says all there is
        to say about most kinds; subclasses may still set the attributes in their body instead.
        """
        super().__init_subclass__(**kw)
        if status is not None:
            cls.status = status
        if code is not None:
            cls.code = code
        if message is not None:
            cls.default_message = message

    def fhir_issues(self) -> list[dict[str, Any]]:
        """The OperationOutcome issues: the given ones, else one issue carrying the message."""
        if self._issues:
            return self._issues
        return [{"severity": "error", "code": self.code, "diagnostics": self.message}]


class Invalid(HealthgovError, ValueError, status=400, code="invalid", message="the request is not valid"):
    """The request is malformed or its content breaks a rule.

    Also a ``ValueError`` so pure parsing code keeps its usual contract.
    """


class Unauthenticated(HealthgovError, status=401, code="login", message="authentication required"):
    """No valid credential: the answer says how to authenticate (WWW-Authenticate)."""

    def __init__(self, message: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class Forbidden(HealthgovError, status=403, code="forbidden", message="not permitted"):
    """The caller is known but may not do this."""


class NotFound(HealthgovError, status=404, code="not-found", message="not found"):
    """Nothing by that name, or nothing the caller may know exists."""


class MethodNotAllowed(HealthgovError, status=405, code="not-supported", message="method not allowed"):
    """The path exists, the method does not."""


class Conflict(HealthgovError, status=409, code="conflict", message="conflicting change; retry"):
    """The change lost a race with another; retrying may succeed."""


class Gone(HealthgovError, status=410, code="deleted", message="gone"):
    """It existed and was deleted (an erased patient)."""


class TooLarge(HealthgovError, status=413, code="too-costly", message="the request is too large"):
    """The request exceeds a size limit."""


class UnsupportedMediaType(HealthgovError, status=415, code="not-supported", message="unsupported Content-Type"):
    """The body is in a format the endpoint does not read."""


class Unprocessable(HealthgovError, status=422, code="processing", message="the request cannot be processed"):
    """Well-formed, but it cannot be acted on as it stands."""


class Throttled(HealthgovError, status=429, code="throttled", message="too many requests"):
    """Too many requests; ``retry_after`` (whole seconds) also goes out as Retry-After."""

    def __init__(self, message: str | None = None, *, retry_after: int = 1, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = max(1, int(retry_after))
        self.headers["Retry-After"] = str(self.retry_after)


class Unavailable(HealthgovError, status=503, code="transient", message="temporarily unavailable, try again shortly"):
    """A dependency (broker, database, policy engine) cannot answer now: retry later."""

    def __init__(self, message: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.headers.setdefault("Retry-After", str(RETRY_AFTER_S))


def operation_outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    """A FHIR OperationOutcome around ``issues``."""
    return {"resourceType": "OperationOutcome", "issue": issues}
