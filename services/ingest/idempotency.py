"""Idempotent submissions: the same Bundle sent twice is stored once and answered the same.

The key is the ``Idempotency-Key`` header or the Bundle's ``identifier``,
scoped to the sending hospital. A key is claimed (a ``pending`` row, settled by
the primary key when two retries race) before anything is published, marked
``done`` with the submission and audit event ids once Kafka acknowledged, and
released if publishing failed, so a retry after a 503 goes through. The same
key with a different body is refused (422): that is a sender bug, not a retry.

A claim fixes the submission id, the ingest AuditEvent's id and its time up
front, so publishing the same submission again yields the same messages: records
stores identical content once and the audit log appends an event id once. That
is what makes taking over a half-done submission safe, and there is one ingest
AuditEvent per submission whatever failed in between (Kafka committed and the
database lost before ``done``, ingest killed mid-send).

Whether the claimant is still at work is known at once on PostgreSQL: it holds
a session advisory lock on the key for as long as it works, which the server
drops the moment its process or the database dies. A retry that gets the lock
takes the pending claim over immediately; one that does not is answered 409
(the same submission really is being processed). Without PostgreSQL a pending
claim is taken over after ``stale_after_s``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import uuid6
from sqlalchemy import delete, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from services.adapters import crypto
from services.adapters.sql import AdvisoryLocks, UnitOfWork
from services.contracts import errors
from services.contracts.events import rfc3339
from services.ingest.store import IdempotencyKey, now

log = logging.getLogger(__name__)


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
    """The right to publish one submission, with the ids every attempt at it publishes under."""

    org: str
    key_digest: str
    submission_id: str = ""
    event_id: str = ""
    occurred_at: str = ""
    lock: Connection | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Replay:
    """An earlier acceptance of the same request."""

    submission_id: str
    event_id: str


def _minted(submission_id: str) -> str:
    """The moment a submission id (a UUIDv7) was made: the ingest event's time, the same on every attempt."""
    return rfc3339(datetime.fromtimestamp((uuid.UUID(submission_id).int >> 80) / 1000, UTC))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Idempotency:
    def __init__(self, engine: Engine, digest_key: bytes, stale_after_s: float = 60.0) -> None:
        self.engine = engine
        self.key = digest_key
        self.stale_after = timedelta(seconds=stale_after_s)
        self._locks = AdvisoryLocks(engine)

    def _lock(self, org: str, kd: str) -> Connection | None:
        """This key's advisory lock; InFlight if a live claimant holds it; None without PostgreSQL."""
        if not self._locks.available:
            return None
        conn = self._locks.try_acquire(org, kd)
        if conn is None:
            raise InFlight("the same submission is being processed")
        return conn

    def _unlock(self, claim: Claim) -> None:
        self._locks.release(claim.lock)

    def begin(self, org: str, key: str | None, body_digest: str) -> Claim | Replay | None:
        """Claim ``key`` for this request, or say how it was answered before; None without a key."""
        if not key:
            return None
        kd = crypto.keyed_digest(self.key, "ingest-idempotency", org, key)
        rd = crypto.keyed_digest(self.key, "ingest-request", body_digest)
        try:
            lock = self._lock(org, kd)
        except InFlight:
            with UnitOfWork(self.engine) as uow:
                row = uow.session.get(IdempotencyKey, (org, kd))
                if row is not None and row.request_digest != rd:
                    raise KeyReused("this idempotency key was used for a different request") from None
            raise
        try:
            return self._claim(org, kd, rd, lock)
        except BaseException:
            self._locks.release(lock)
            raise

    def _claim(self, org: str, kd: str, rd: str, lock: Connection | None) -> Claim | Replay:
        with UnitOfWork(self.engine) as uow:
            row = IdempotencyKey(org=org, key_digest=kd, request_digest=rd, submission_id=str(uuid6.uuid7()),
                                 event_id=str(uuid6.uuid7()))
            planned = Claim(org, kd, row.submission_id, row.event_id, _minted(row.submission_id), lock)
            uow.session.add(row)
            try:
                uow.commit()
                return planned
            except IntegrityError:
                uow.session.rollback()
        with UnitOfWork(self.engine) as uow:
            row = uow.session.get(IdempotencyKey, (org, kd))
            if row is None:  # released in between: try once more
                return self._claim(org, kd, rd, lock)
            if row.request_digest != rd:
                raise KeyReused("this idempotency key was used for a different request")
            if row.state == "done":
                self._locks.release(lock)
                return Replay(row.submission_id, row.event_id)
            # Pending: with the lock its claimant is gone (take over at once); without locks, after a while.
            if lock is None and now() - _aware(row.updated_at) < self.stale_after:
                raise InFlight("the same submission is being processed")
            taken = uow.session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.org == org, IdempotencyKey.key_digest == kd,  # type: ignore[arg-type]
                       IdempotencyKey.updated_at == row.updated_at)  # type: ignore[arg-type]
                .values(updated_at=now()))
            uow.commit()
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise InFlight("the same submission is being processed")
            if not row.submission_id:  # claimed before claims carried their ids
                return Claim(org, kd, planned.submission_id, planned.event_id, planned.occurred_at, lock)
            return Claim(org, kd, row.submission_id, row.event_id, _minted(row.submission_id), lock)

    def done(self, claim: Claim, submission_id: str, event_id: str) -> None:
        """Record the answer. Called once Kafka committed: a database that fails here is logged, not raised.

        The submission is durable; the key stays pending, and a retry takes it
        over and publishes the same ids again, which are stored once.
        """
        try:
            with UnitOfWork(self.engine) as uow:
                uow.session.execute(
                    update(IdempotencyKey)
                    .where(IdempotencyKey.org == claim.org, IdempotencyKey.key_digest == claim.key_digest)  # type: ignore[arg-type]
                    .values(state="done", submission_id=submission_id, event_id=event_id, updated_at=now()))
                uow.commit()
        except SQLAlchemyError as exc:
            log.warning("idempotency key of submission %s not marked done: %r", submission_id, exc)
        finally:
            self._unlock(claim)

    def release(self, claim: Claim) -> None:
        try:
            with UnitOfWork(self.engine) as uow:
                uow.session.execute(
                    delete(IdempotencyKey)
                    .where(IdempotencyKey.org == claim.org, IdempotencyKey.key_digest == claim.key_digest,  # type: ignore[arg-type]
                           IdempotencyKey.state == "pending"))  # type: ignore[arg-type]
                uow.commit()
        finally:
            self._unlock(claim)
