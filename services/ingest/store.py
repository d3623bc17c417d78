"""Ingest's own durable state: idempotency keys and bulk-import jobs (SQLModel).

Why a table and not Kafka: an idempotent answer needs a point look-up by key
(and a unique constraint to settle two concurrent retries), which a log does
not give; and a job's progress must be readable by any ingest instance. The
store is ingest's own database (``HEALTHGOV_INGEST_DATABASE_URL``, else the
platform database, else SQLite in the state dir), so ingest processes stay
interchangeable.

No column holds PHI: keys and request bodies are stored as keyed digests, a
job's accepted NDJSON is stored as AES-GCM ciphertext until it has been
published, and errors carry line numbers and element paths, never values.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, LargeBinary, Text
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from services.adapters.sql import engine_for


def now() -> datetime:
    return datetime.now(UTC)


class IdempotencyKey(SQLModel, table=True):
    """A submission already accepted under a key: the same request is answered the same way."""

    __tablename__ = "ingest_idempotency"
    org: str = Field(primary_key=True)
    key_digest: str = Field(primary_key=True)  # keyed digest of Idempotency-Key / Bundle.identifier
    request_digest: str  # keyed digest of the request body
    state: str = "pending"  # pending -> done
    submission_id: str = ""
    event_id: str = ""
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)


class ImportJob(SQLModel, table=True):
    """An asynchronous NDJSON import: progress, counts and per-line errors."""

    __tablename__ = "ingest_import_job"
    id: str = Field(primary_key=True)
    org: str = Field(index=True)
    caller_id: str
    caller_role: str
    caller_org_type: str = "hospital"
    state: str = "accepted"  # accepted -> running -> completed | failed
    body_digest: str  # SHA-256 of the request body as received (what the hospital sent)
    event_id: str  # the ingest AuditEvent's id, fixed up front so a resumed job never logs twice
    lines: int = 0
    chunks: int = 0
    next_chunk: int = 0
    processed: int = 0
    accepted: int = 0
    rejected: int = 0
    counts: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    errors: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    last_error: str | None = None
    lease_until: datetime | None = None
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)
    completed_at: datetime | None = None


class ImportChunk(SQLModel, table=True):
    """A slice of an accepted job's NDJSON, encrypted, deleted once published."""

    __tablename__ = "ingest_import_chunk"
    job_id: str = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    first_line: int
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))






class IngestClaim(SQLModel, table=True):
    """A resource's author and patient: the first hospital to send ``Type/id`` owns it (keyed digests only)."""

    __tablename__ = "ingest_claim"
    rid_key: str = Field(primary_key=True)
    hospital: str
    patient_key: str
    created_at: datetime = Field(default_factory=now)


class IngestRegistration(SQLModel, table=True):
    """A hospital that knows a patient: it sent their Patient, or matched them by a strong identifier."""

    __tablename__ = "ingest_registration"
    patient_key: str = Field(primary_key=True)
    hospital: str = Field(primary_key=True)
    via: str  # "patient" | "identifier"
    created_at: datetime = Field(default_factory=now)


class IngestIdentifier(SQLModel, table=True):
    """A strong (national) identifier's keyed digest → the patient it was first registered for."""

    __tablename__ = "ingest_identifier"
    identifier_key: str = Field(primary_key=True)
    patient_key: str


TABLES = [IdempotencyKey.__table__, ImportJob.__table__, ImportChunk.__table__,  # type: ignore[attr-defined]
          IngestClaim.__table__, IngestRegistration.__table__, IngestIdentifier.__table__]  # type: ignore[attr-defined]


def make_engine(url: str) -> Engine:
    engine = engine_for(url)
    SQLModel.metadata.create_all(engine, tables=TABLES)
    return engine
