"""Idempotent submissions: the same Bundle sent twice is stored once and answered the same.

The key is the ``Idempotency-Key`` header or the Bundle's ``identifier``,
scoped to the sending hospital. A key is claimed (a ``pending`` row, settled by
the primary key when two retries race) before anything is published, marked
``done`` with the submission and audit event ids once Kafka acknowledged, and
released if publishing failed, so a retry after a 503 goes through. The same
key with a different body is refused (422): that is a sender bug, not a retry.
A claim left ``pending`` by a crashed process is taken over after
``stale_after_s``; republishing is harmless because records stores identical
content once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from services.adapters import crypto
from services.adapters.sql import UnitOfWork
from services.contracts import errors
from services.ingest.store import IdempotencyKey, now


class KeyReused(errors.Unprocessable):
    """The key was used before for a different request body (422)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, issues=[{"severity": "error", "code": "duplicate", "diagnostics": message,
                                           "expression": ["Idempotency-Key"]}])


class InFlight(errors.Conflict):
    """The same submission is being processed right now (409, retry shortly)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"},
                         issues=[{"severity": "error", "code": "conflict", "diagnostics": message,
                                  "expression": ["Idempotency-Key"]}])


@dataclass(frozen=True)
class Claim:
    org: str
    key_digest: str


@dataclass(frozen=True)
class Replay:
    """An earlier acceptance of the same request."""

    submission_id: str
    event_id: str


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Idempotency:
    def __init__(self, engine: Engine, digest_key: bytes, stale_after_s: float = 60.0) -> None:
        self.engine = engine
        self.key = digest_key
        self.stale_after = timedelta(seconds=stale_after_s)

    def begin(self, org: str, key: str | None, body_digest: str) -> Claim | Replay | None:
        """Claim ``key`` for this request, or say how it was answered before; None without a key."""
        if not key:
            return None
        kd = crypto.keyed_digest(self.key, "ingest-idempotency", org, key)
        rd = crypto.keyed_digest(self.key, "ingest-request", body_digest)
        with UnitOfWork(self.engine) as uow:
            uow.session.add(IdempotencyKey(org=org, key_digest=kd, request_digest=rd))
            try:
                uow.commit()
                return Claim(org, kd)
            except IntegrityError:
                uow.session.rollback()
        with UnitOfWork(self.engine) as uow:
            row = uow.session.get(IdempotencyKey, (org, kd))
            if row is None:  # released in between: try once more
                return self.begin(org, key, body_digest)
            if row.request_digest != rd:
                raise KeyReused("this idempotency key was used for a different request")
            if row.state == "done":
                return Replay(row.submission_id, row.event_id)
            if now() - _aware(row.updated_at) < self.stale_after:
                raise InFlight("the same submission is being processed")
            taken = uow.session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.org == org, IdempotencyKey.key_digest == kd,  # type: ignore[arg-type]
                       IdempotencyKey.updated_at == row.updated_at)  # type: ignore[arg-type]
                .values(updated_at=now()))
            uow.commit()
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise InFlight("the same submission is being processed")
            return Claim(org, kd)

    def done(self, claim: Claim, submission_id: str, event_id: str) -> None:
        with UnitOfWork(self.engine) as uow:
            uow.session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.org == claim.org, IdempotencyKey.key_digest == claim.key_digest)  # type: ignore[arg-type]
                .values(state="done", submission_id=submission_id, event_id=event_id, updated_at=now()))
            uow.commit()

    def release(self, claim: Claim) -> None:
        with UnitOfWork(self.engine) as uow:
            uow.session.execute(
                delete(IdempotencyKey)
                .where(IdempotencyKey.org == claim.org, IdempotencyKey.key_digest == claim.key_digest,  # type: ignore[arg-type]
                       IdempotencyKey.state == "pending"))  # type: ignore[arg-type]
            uow.commit()
