"""The OPA input and decision documents (docs/architecture.md §5).

Python never re-codes a rule: it fills ``PolicyInput``, asks OPA, and acts on
``Decision``. These models are the whole contract with ``policies/``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from services.contracts import vocabulary
from services.contracts.vocabulary import Action, Deidentify

DECISION_PATH = "healthgov/access/decision"
# The same decision for each of ``input.resources`` at once (one evaluation for a whole record).
DECISIONS_PATH = "healthgov/access/decisions"

PURPOSES: tuple[str, ...] = tuple(vocabulary.PURPOSES)  # the purpose-of-use codes, in the vocabulary's order


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
    accessor: str | None = None  # who made the access judged (oversight_review)


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
    # A data-use project's facts (id, org, status, purpose, types, elements, deidentify, expires) and, for an
    # export, the resource types and the elements ("Type.element") it asks for
    # (policies/healthgov/access/projects.rego).
    project: dict[str, Any] | None = None
    requested_types: list[str] | None = None
    requested_elements: list[str] | None = None
    # An analytic query's shape (policies/healthgov/access/analytics.rego): {"feasibility", "grouped"}.
    analytics: dict[str, Any] | None = None


class Obligations(BaseModel):
    deidentify: Deidentify = "none"
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
