"""FHIR R4 Consent in and out, and the consent shape the policy reads (docs/architecture.md §5).

A patient (or a hospital on the patient's behalf) sends a FHIR Consent; we
validate it, fill what the server owns (id, dateTime, defaults for scope,
category and the actor's role) and keep it as sent. For every decision it is flattened into the
policy's consent documents, one per (grantee, purpose):

    {"id", "grantee", "purpose", "decision": "permit"|"deny", "types",
     "labels", "expires", "status"}

from ``provision``: ``type`` → decision, ``actor[].reference`` (an
Organization) → grantee (no actor: everybody, which only a deny can use),
``purpose[]`` → purpose (none: ``*``), ``class[]`` → resource types (none: all),
``securityLabel[]`` → labels released, ``period.end`` → expires. What a consent
*means* is decided only by the policy; this module only translates.

Pure functions, no I/O.
"""

from __future__ import annotations

import copy
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from services.contracts import errors
from services.contracts.policy import PURPOSES
from services.fhir.validation import Issue, validate_resource

SCOPE_PRIVACY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                             "code": "patient-privacy", "display": "Privacy Consent"}]}
CATEGORY_PATIENT_CONSENT = [{"coding": [{"system": "http://loinc.org", "code": "59284-0",
                                         "display": "Patient Consent"}]}]
# An actor is the recipient the consent is about unless the sender says otherwise.
ROLE_RECIPIENT = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                              "code": "IRCP", "display": "information recipient"}]}
INACTIVE = "inactive"
PROPOSED = "proposed"  # recorded on the patient's behalf, awaiting their confirmation
STATUSES = ("draft", "proposed", "active", "rejected", "inactive", "entered-in-error")  # R4 consent-state-codes
_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")


class InvalidConsent(errors.Invalid):
    """The Consent cannot be accepted; ``issues`` say what and where."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(i.diagnostics for i in issues[:3]))
        self.issues = issues

    def fhir_issues(self) -> list[dict[str, Any]]:
        return [i.to_fhir() for i in self.issues]


def _reference_id(ref: Any, rtype: str) -> str | None:
    """``"<rtype>/<id>"`` → id; anything else → None."""
    if isinstance(ref, dict):
        ref = ref.get("reference")
    if isinstance(ref, str) and ref.startswith(rtype + "/") and len(ref) > len(rtype) + 1:
        return ref.split("/", 1)[1]
    return None


def patient_of(consent: dict[str, Any]) -> str | None:
    """The FHIR id of the patient the consent belongs to."""
    return _reference_id(consent.get("patient"), "Patient")


def parse(doc: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """Validate an incoming FHIR Consent and return it as we keep it (without id).

    Raises ``InvalidConsent`` with an issue per problem, each naming the element.
    """
    if not isinstance(doc, dict) or doc.get("resourceType") != "Consent":
        raise InvalidConsent([Issue("expected a FHIR Consent resource", "Consent", "structure")])
    consent = copy.deepcopy(doc)
    for server_owned in ("id", "meta"):
        consent.pop(server_owned, None)
    consent.setdefault("status", "active")
    consent.setdefault("scope", SCOPE_PRIVACY)
    consent.setdefault("category", CATEGORY_PATIENT_CONSENT)
    consent.setdefault("dateTime", (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    provision = consent.get("provision")
    for actor in (provision.get("actor") or []) if isinstance(provision, dict) else []:
        if isinstance(actor, dict):
            actor.setdefault("role", ROLE_RECIPIENT)
    issues = validate_resource(consent, "Consent")
    if issues:
        raise InvalidConsent(issues)
    issues = _semantic_issues(consent)
    if issues:
        raise InvalidConsent(issues)
    if not consent.get("performer"):
        consent["performer"] = [{"reference": consent["patient"]["reference"]}]
    return consent


def _semantic_issues(consent: dict[str, Any]) -> list[Issue]:
    """What FHIR allows but a governance consent cannot leave open."""
    issues: list[Issue] = []
    if consent.get("status") not in STATUSES:
        issues.append(Issue(f"Consent.status must be one of {', '.join(STATUSES)}", "Consent.status", "code-invalid"))
    if patient_of(consent) is None:
        issues.append(Issue("Consent.patient must reference the patient as Patient/<id>",
                            "Consent.patient", "required"))
    provision = consent.get("provision")
    if not isinstance(provision, dict) or provision.get("type") not in ("permit", "deny"):
        issues.append(Issue("Consent.provision.type must be permit or deny",
                            "Consent.provision.type", "required"))
        return issues
    if provision.get("provision"):
        issues.append(Issue("nested provisions are not supported: send one Consent per rule",
                            "Consent.provision.provision", "not-supported"))
    for i, actor in enumerate(provision.get("actor") or []):
        if _reference_id(actor.get("reference"), "Organization") is None:
            issues.append(Issue("a consent is granted to an organisation: actor.reference must be "
                                "Organization/<org id>", f"Consent.provision.actor[{i}].reference", "value"))
    for i, coding in enumerate(provision.get("purpose") or []):
        if coding.get("code") not in PURPOSES:
            issues.append(Issue(f"unknown purpose of use {coding.get('code')!r}; expected one of "
                                f"{', '.join(PURPOSES)}", f"Consent.provision.purpose[{i}]", "code-invalid"))
    for i, coding in enumerate(provision.get("class") or []):
        if not isinstance(coding.get("code"), str) or not coding["code"]:
            issues.append(Issue("class needs the resource type as code", f"Consent.provision.class[{i}]",
                                "required"))
    for i, coding in enumerate(provision.get("securityLabel") or []):
        if not isinstance(coding.get("code"), str) or not coding["code"]:
            issues.append(Issue("securityLabel needs a code", f"Consent.provision.securityLabel[{i}]",
                                "required"))
    end = (provision.get("period") or {}).get("end")
    if end is not None and normalise_instant(end) is None:
        issues.append(Issue(f"provision.period.end {end!r} is not a date or dateTime",
                            "Consent.provision.period.end", "value"))
    return issues


def new_id() -> str:
    return str(uuid.uuid4())


def normalise_instant(value: Any) -> str | None:
    """A FHIR date or dateTime as the RFC 3339 instant the policy compares.

    A partial date means its first instant (``2027`` → ``2027-01-01T00:00:00Z``).
    """
    if not isinstance(value, str):
        return None
    m = _PARTIAL_DATE.match(value)
    if m:
        year, month, day = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
        try:
            return datetime(year, month, day, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def with_identity(consent: dict[str, Any], consent_id: str, version: int, last_updated: str) -> dict[str, Any]:
    """The Consent as we return it: server id, version and time."""
    out = dict(consent)
    out["id"] = consent_id
    out["meta"] = {"versionId": str(version), "lastUpdated": last_updated}
    return {"resourceType": "Consent", **{k: v for k, v in out.items() if k != "resourceType"}}


def releases_data(consent: dict[str, Any]) -> bool:
    """Whether the consent permits a disclosure (an opt-out only ever withholds)."""
    return (consent.get("provision") or {}).get("type") == "permit" and consent.get("status") == "active"


def proposed(consent: dict[str, Any]) -> dict[str, Any]:
    """The same Consent, not in force until the patient confirms it (FHIR status ``proposed``)."""
    return {**consent, "status": PROPOSED}


def confirmed(consent: dict[str, Any]) -> dict[str, Any]:
    """The same Consent, in force (FHIR status ``active``)."""
    return {**consent, "status": "active"}


def revoked(consent: dict[str, Any]) -> dict[str, Any]:
    """The same Consent, withdrawn (FHIR status ``inactive``)."""
    out = dict(consent)
    out["status"] = INACTIVE
    return out


def to_policy(consent: dict[str, Any]) -> list[dict[str, Any]]:
    """The policy's consent documents for one stored FHIR Consent (docs/architecture.md §5)."""
    provision = consent.get("provision") or {}
    grantees = [_reference_id(a.get("reference"), "Organization") for a in provision.get("actor") or []] or [None]
    purposes = [c.get("code") for c in provision.get("purpose") or []] or ["*"]
    types = sorted({c["code"] for c in provision.get("class") or [] if c.get("code")})
    labels = sorted({c["code"] for c in provision.get("securityLabel") or [] if c.get("code")})
    expires = normalise_instant((provision.get("period") or {}).get("end"))
    return [
        {"id": consent.get("id"), "grantee": grantee, "purpose": purpose,
         "decision": provision.get("type"), "types": types, "labels": labels,
         "expires": expires, "status": consent.get("status", "active")}
        for grantee in grantees for purpose in purposes
    ]


def summary(consent: dict[str, Any]) -> dict[str, Any]:
    """What the audit event says about a consent: terms, never patient identity."""
    provision = consent.get("provision") or {}
    return {
        "consent": consent.get("id"),
        "status": consent.get("status"),
        "provision": provision.get("type"),
        "grantees": sorted({g for g in (_reference_id(a.get("reference"), "Organization")
                                        for a in provision.get("actor") or []) if g}),
        "purposes": sorted({c.get("code") for c in provision.get("purpose") or [] if c.get("code")}),
        "types": sorted({c["code"] for c in provision.get("class") or [] if c.get("code")}),
        "labels": sorted({c["code"] for c in provision.get("securityLabel") or [] if c.get("code")}),
        "expires": normalise_instant((provision.get("period") or {}).get("end")),
    }
