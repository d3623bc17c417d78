"""Versioned message schemas carried on Kafka (docs/architecture.md §3, §6).

Each value is JSON with a ``schema`` field naming its version, so consumers can
refuse what they do not understand instead of guessing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import rfc8785
import uuid6
from pydantic import BaseModel, ConfigDict, Field

from services.contracts.vocabulary import AuditKind as AuditKind  # re-exported: the events' kinds

INGEST_ENVELOPE_SCHEMA = "healthgov.ingest.envelope.v1"
AUDIT_EVENT_SCHEMA = "healthgov.audit.event.v1"
DEADLETTER_SCHEMA = "healthgov.deadletter.v1"
CONSENT_CHANGE_SCHEMA = "healthgov.consent.change.v1"
QUALITY_REPORT_SCHEMA = "healthgov.quality.report.v1"



def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """Format a timestamp as RFC 3339 with a ``Z`` suffix (what OPA parses)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class IngestEnvelope(BaseModel):
    """What ingest puts on ``ingest.resources.v1``.

    Only routing metadata travels in the clear; the FHIR payload is the HPKE
    ``sealed`` blob that only the records service can open. ``hospital`` is the
    authenticated sender (an organisation, not a person).
    """

    model_config = ConfigDict(extra="forbid")

    schema_: Literal["healthgov.ingest.envelope.v1"] = Field(
        default=INGEST_ENVELOPE_SCHEMA, alias="schema"
    )
    submission_id: str
    hospital: str
    kind: Literal["resource", "transaction"]
    sealed: str  # base64 of HPKE(enc || ciphertext)
    received_at: str


class SealedPayload(BaseModel):
    """The plaintext inside an envelope's seal, as records sees it after opening."""

    resources: list[dict[str, Any]]
    labels: list[list[str]]  # per resource, parallel to ``resources``
    patients: list[str | None]  # per resource: the patient's logical id, or None (directory)


class Accessor(BaseModel):
    """Who asked: the authenticated caller."""

    id: str
    org: str
    org_type: str
    role: str


class ResourceRef(BaseModel):
    """One resource a disclosure touched: type, id and version."""

    type: str
    id: str
    version: str | None = None


class AuditDecision(BaseModel):
    """The policy decision an event records."""

    allow: bool
    reasons: list[str] = Field(default_factory=list)
    obligations: dict[str, Any] = Field(default_factory=dict)
    policy_version: str | None = None


class AuditEvent(BaseModel):
    """One accountable act (docs/architecture.md §6).

    Shaped to map onto FHIR AuditEvent / IHE BALP and to answer a HIPAA
    accounting of disclosures: when, to whom, what, why.
    """

    model_config = ConfigDict(populate_by_name=True)

    schema_: Literal["healthgov.audit.event.v1"] = Field(
        default=AUDIT_EVENT_SCHEMA, alias="schema"
    )
    event_id: str = Field(default_factory=lambda: str(uuid6.uuid7()))
    occurred_at: str = Field(default_factory=lambda: rfc3339(utcnow()))
    kind: AuditKind
    accessor: Accessor
    purpose: str | None = None
    patient: str | None = None
    resources: list[ResourceRef] = Field(default_factory=list)
    decision: AuditDecision | None = None
    legal: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None
    data_digest: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    def canonical(self) -> bytes:
        """RFC 8785 canonical JSON: the exact bytes the Merkle leaf hashes."""
        return rfc8785.dumps(self.model_dump(mode="json", by_alias=True))


class DeadLetter(BaseModel):
    """A message a consumer could not process, with the reason, for an operator."""

    schema_: Literal["healthgov.deadletter.v1"] = Field(default=DEADLETTER_SCHEMA, alias="schema")
    topic: str
    partition: int
    offset: int
    reason: str
    original: str  # base64 of the original value


class ConsentChange(BaseModel):
    """A consent created or revoked, on ``consent.changes.v1`` (key: patient pseudonym).

    The records service applies it to its consent registry (idempotently, by
    ``change_id``); the accountable act is the matching AuditEvent of kind
    ``consent`` (``event_id``). The FHIR Consent travels only as ``sealed``:
    AES-256-GCM under the patient's data key, bound to this ``change_id``, so
    the broker never holds who consented to what in the clear and erasing the
    patient makes these messages unreadable too.
    """

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    schema_: Literal["healthgov.consent.change.v1"] = Field(default=CONSENT_CHANGE_SCHEMA, alias="schema")
    change_id: str = Field(default_factory=lambda: str(uuid6.uuid7()))
    occurred_at: str = Field(default_factory=lambda: rfc3339(utcnow()))
    change: Literal["created", "revoked", "confirmed"]
    patient: str  # pseudonym
    consent_index: str  # blind index of the consent id
    sealed: str  # base64 of the sealed FHIR Consent, as it is after the change
    accessor: Accessor
    event_id: str  # the AuditEvent of kind "consent" that records the change


class TypeQuality(BaseModel):
    """The quality of one resource type within one submission: counts only, never content.

    ``warnings`` counts the validity warnings of accepted resources and
    ``warning_rules`` the same per rule that raised them; ``fields`` counts,
    per priority field, the accepted resources that carry it
    (``fields_expected`` = accepted resources x priority fields); ``codings``
    the clinical codings seen and ``recognised`` those in a recognised code
    system; ``lag`` counts resources per lag bucket (clinical time to arrival,
    bucket labels in ``LAG_BUCKETS_H``), ``lag_unknown`` those without a
    clinical time.
    """

    model_config = ConfigDict(extra="forbid")

    count: int = 0
    accepted: int = 0
    rejected: int = 0
    reasons: dict[str, int] = Field(default_factory=dict)
    warnings: int = 0
    warning_rules: dict[str, int] = Field(default_factory=dict)  # per validity rule (``per-1``, ``binding``, …)
    fields: dict[str, int] = Field(default_factory=dict)
    fields_expected: int = 0
    codings: int = 0
    recognised: int = 0
    defaults: int = 0
    duplicates: int = 0
    lag: dict[str, int] = Field(default_factory=dict)
    lag_unknown: int = 0


# Upper bounds (hours) of the lag buckets a report counts in; the last bucket is open ("inf").
LAG_BUCKETS_H: tuple[float, ...] = (1, 6, 24, 72, 168, 720, 8760)


class QualityReport(BaseModel):
    """What ingest saw of one submission, accepted or refused, on ``ingest.quality.v1`` (key: hospital).

    It is PHI-free by construction: resource types, counts, issue codes, field
    names and code-system verdicts. The oversight service turns these into
    per-hospital metrics (docs/architecture.md §14).
    """

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    schema_: Literal["healthgov.quality.report.v1"] = Field(default=QUALITY_REPORT_SCHEMA, alias="schema")
    report_id: str = Field(default_factory=lambda: str(uuid6.uuid7()))
    hospital: str
    submission_id: str
    received_at: str = Field(default_factory=lambda: rfc3339(utcnow()))
    transport: str = "fhir"
    outcome: Literal["accepted", "refused"]
    types: dict[str, TypeQuality] = Field(default_factory=dict)
