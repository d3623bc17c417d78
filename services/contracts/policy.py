"""The OPA input and decision documents (docs/architecture.md §5).

Python never re-codes a rule: it fills ``PolicyInput``, asks OPA, and acts on
``Decision``. These models are the whole contract with ``policies/``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

DECISION_PATH = "healthgov/access/decision"
# The same decision for each of ``input.resources`` at once (one evaluation for a whole record).
DECISIONS_PATH = "healthgov/access/decisions"

Action = Literal["read", "write", "audit_read", "consent_write", "consent_confirm", "erase", "refer",
                 "oversight_review"]
PURPOSES = ("PATRQT", "TREAT", "ETREAT", "PUBHLTH", "HLEGAL", "HCOMPL", "HRESCH", "HPAYMT", "HMARKT")


class Subject(BaseModel):
    id: str
    org: str
    org_type: str
    role: str
    patient: str | None = None


class PolicyResource(BaseModel):
    patient: str | None
    type: str
    labels: list[str] = Field(default_factory=list)
    hospital: str | None = None


class Relationship(BaseModel):
    care: bool = False


class Legal(BaseModel):
    """The legal authority of a request: only facts records verified, never what a caller wrote.

    Each is the output of ``services.adapters.documents.DocumentVerifier`` for a
    document its issuing court or ethics board signed (``verified: true``,
    ``issuer``, ``org``, ``id``, ``expires``, ...); the policy refuses anything
    without ``verified: true``.
    """

    warrant: dict[str, Any] | None = None
    ethics_approval: dict[str, Any] | None = None


class PolicyInput(BaseModel):
    subject: Subject
    action: Action
    purpose: str
    resource: PolicyResource
    relationship: Relationship = Field(default_factory=Relationship)
    consents: list[dict[str, Any]] = Field(default_factory=list)
    legal: Legal = Field(default_factory=Legal)
    break_glass: dict[str, Any] | None = None
    now: str


class Obligations(BaseModel):
    deidentify: Literal["none", "pseudonymize", "safe_harbor", "aggregate_only"] = "none"
    redact_labels: list[str] = Field(default_factory=list)
    notify_patient: bool = False
    notify_after: str | None = None
    review: bool = False


class Decision(BaseModel):
    allow: bool = False
    reasons: list[str] = Field(default_factory=list)
    policy_version: str | None = None
    obligations: Obligations = Field(default_factory=Obligations)

    @classmethod
    def fail_closed(cls, why: str) -> Decision:
        """The decision taken when OPA cannot be asked: deny, saying why."""
        return cls(allow=False, reasons=[why])
