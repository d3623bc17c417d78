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

    def fhir_issues(self) -> list[dict[str, Any]]:
        """The OperationOutcome issues: the given ones, else one issue carrying the message."""
        if self._issues:
            return self._issues
        return [{"severity": "error", "code": self.code, "diagnostics": self.message}]


class Invalid(HealthgovError, ValueError):
    """The request is malformed or its content breaks a rule (400).

    Also a ``ValueError`` so pure parsing code keeps its usual contract.
    """

    status, code, default_message = 400, "invalid", "the request is not valid"


class Unauthenticated(HealthgovError):
    status, code, default_message = 401, "login", "authentication required"

    def __init__(self, message: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class Forbidden(HealthgovError):
    status, code, default_message = 403, "forbidden", "not permitted"


class NotFound(HealthgovError):
    status, code, default_message = 404, "not-found", "not found"


class MethodNotAllowed(HealthgovError):
    status, code, default_message = 405, "not-supported", "method not allowed"


class Conflict(HealthgovError):
    status, code, default_message = 409, "conflict", "conflicting change; retry"


class Gone(HealthgovError):
    status, code, default_message = 410, "deleted", "gone"


class TooLarge(HealthgovError):
    status, code, default_message = 413, "too-costly", "the request is too large"


class UnsupportedMediaType(HealthgovError):
    status, code, default_message = 415, "not-supported", "unsupported Content-Type"


class Unprocessable(HealthgovError):
    status, code, default_message = 422, "processing", "the request cannot be processed"


class Throttled(HealthgovError):
    """Too many requests; ``retry_after`` (whole seconds) also goes out as Retry-After."""

    status, code, default_message = 429, "throttled", "too many requests"

    def __init__(self, message: str | None = None, *, retry_after: int = 1, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = max(1, int(retry_after))
        self.headers["Retry-After"] = str(self.retry_after)


class Unavailable(HealthgovError):
    """A dependency (broker, database, policy engine) cannot answer now: retry later."""

    status, code, default_message = 503, "transient", "temporarily unavailable, try again shortly"

    def __init__(self, message: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.headers.setdefault("Retry-After", str(RETRY_AFTER_S))


def operation_outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    """A FHIR OperationOutcome around ``issues``."""
    return {"resourceType": "OperationOutcome", "issue": issues}
