"""An audit event as a FHIR R4 AuditEvent, shaped per IHE Basic Audit Log Patterns (BALP).

A disclosure follows BALP's *Privacy Disclosure at Source* pattern (type DICOM
110106 Export, subtype ISO 21089 ``disclose`` plus the RESTful interaction,
agents ``source`` = the platform and ``recipient`` = the accessor's
organisation, the requesting user as ``information recipient`` with its role
and PurposeOfUse, an entity for the patient and one per resource released).
Other kinds use the basic RESTful patterns (type ``rest``). A denial is
recorded like the read it refused, with outcome 4 (minor failure, the HTTP
4xx family) and the policy's reasons in ``outcomeDesc``.

What we cannot fill: BALP wants ``agent.network`` for source and recipient,
and healthgov does not log network addresses. So no ``meta.profile`` is
claimed; the codes and slices are BALP's. The patient is referenced by the
platform pseudonym (an identifier), never by a FHIR id: the audit trail holds
no PHI.
"""

from __future__ import annotations

from typing import Any

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ORG_SYSTEM = "https://healthgov.example/fhir/sid/org"
USER_SYSTEM = "https://healthgov.example/fhir/sid/user"
PSEUDONYM_SYSTEM = "https://healthgov.example/fhir/sid/patient-pseudonym"
EVENT_SYSTEM = "https://healthgov.example/fhir/sid/audit-event"
POLICY_SYSTEM = "https://healthgov.example/policy"

# kind -> (type, subtypes, action)
_SHAPES: dict[str, tuple[dict[str, str], list[dict[str, str]], str]] = {
    "disclosure": ({"system": DCM, "code": "110106", "display": "Export"},
                   [{"system": LIFECYCLE, "code": "disclose", "display": "Disclose Record Lifecycle Event"},
                    {"system": RESTFUL, "code": "read", "display": "read"}], "R"),
    "break_glass": ({"system": DCM, "code": "110106", "display": "Export"},
                    [{"system": LIFECYCLE, "code": "disclose", "display": "Disclose Record Lifecycle Event"},
                     {"system": RESTFUL, "code": "read", "display": "read"}], "R"),
    "download": ({"system": DCM, "code": "110106", "display": "Export"},
                 [{"system": LIFECYCLE, "code": "disclose", "display": "Disclose Record Lifecycle Event"},
                  {"system": RESTFUL, "code": "read", "display": "read"}], "R"),
    "denial": ({"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"},
               [{"system": RESTFUL, "code": "read", "display": "read"}], "R"),
    "consent": ({"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"},
                [{"system": RESTFUL, "code": "update", "display": "update"}], "U"),
    "erasure": ({"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"},
                [{"system": LIFECYCLE, "code": "destroy", "display": "Destroy/Delete Record Lifecycle Event"},
                 {"system": RESTFUL, "code": "delete", "display": "delete"}], "D"),
    "key_rotation": ({"system": DCM, "code": "110113", "display": "Security Alert"}, [], "E"),
    "ingest": ({"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"},
               [{"system": RESTFUL, "code": "create", "display": "create"}], "C"),
    "referral": ({"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"},
                 [{"system": RESTFUL, "code": "create", "display": "create"}], "C"),
    "care_relationship": ({"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"},
                          [{"system": RESTFUL, "code": "create", "display": "create"}], "C"),
    "project": ({"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"},
                [{"system": RESTFUL, "code": "update", "display": "update"}], "U"),
    "break_glass_review": ({"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"},
                           [{"system": RESTFUL, "code": "update", "display": "update"}], "U"),
    # A SMART Backend Services client authenticated and was given an access token (DICOM User Authentication/Login).
    "access_token": ({"system": DCM, "code": "110114", "display": "User Authentication"},
                     [{"system": DCM, "code": "110122", "display": "Login"}], "E"),
}


def _concept(coding: dict[str, str]) -> dict[str, Any]:
    return {"coding": [coding]}


def _agents(ev: dict[str, Any]) -> list[dict[str, Any]]:
    acc = ev.get("accessor") or {}
    decision = ev.get("decision") or {}
    platform = {"type": _concept({"system": DCM, "code": "110153", "display": "Source Role ID"}),
                "who": {"display": "healthgov"}, "requestor": False}
    recipient = {"type": _concept({"system": DCM, "code": "110152", "display": "Destination Role ID"}),
                 "who": {"identifier": {"system": ORG_SYSTEM, "value": acc.get("org", "")},
                         "display": acc.get("org_type", "")},
                 "requestor": False}
    user: dict[str, Any] = {
        "type": _concept({"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}),
        "who": {"identifier": {"system": f"{USER_SYSTEM}/{acc.get('org', '')}", "value": acc.get("id", "")}},
        "requestor": True,
    }
    if acc.get("role"):
        user["role"] = [{"text": acc["role"]}]
    if ev.get("purpose"):
        user["purposeOfUse"] = [_concept({"system": ACT_REASON, "code": ev["purpose"]})]
    if decision.get("policy_version"):
        user["policy"] = [f"{POLICY_SYSTEM}/{decision['policy_version']}#{r}" for r in decision.get("reasons", [])]
    return [platform, recipient, user]


def _entities(ev: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if ev.get("patient"):
        out.append({"what": {"type": "Patient", "identifier": {"system": PSEUDONYM_SYSTEM, "value": ev["patient"]}},
                    "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                    "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}})
    for ref in ev.get("resources") or []:
        if ev.get("kind") == "ingest":  # ingest events count resources per type
            what = {"display": f"{ref.get('type')} x{ref.get('id')}"}
        else:
            version = f"/_history/{ref['version']}" if ref.get("version") else ""
            what = {"reference": f"{ref.get('type')}/{ref.get('id')}{version}"}
        out.append({"what": what, "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                    "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}})
    if ev.get("request_id"):
        out.append({"what": {"identifier": {"system": f"{EVENT_SYSTEM}/request-id", "value": ev["request_id"]}},
                    "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"}})
    return out


def to_fhir(ev: dict[str, Any], index: int | None = None) -> dict[str, Any]:
    """One logged event (its JSON) as a FHIR R4 AuditEvent resource."""
    kind = ev.get("kind", "")
    event_type, subtypes, action = _SHAPES.get(kind, _SHAPES["disclosure"])
    decision = ev.get("decision") or {}
    denied = kind == "denial" or decision.get("allow") is False
    res: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": ev["event_id"],
        "type": event_type,
        "action": action,
        "recorded": ev.get("occurred_at"),
        "outcome": "4" if denied else "0",
        "agent": _agents(ev),
        "source": {"site": "healthgov", "observer": {"display": "healthgov audit log"},
                   "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
    }
    if subtypes:
        res["subtype"] = subtypes
    if denied:
        res["outcomeDesc"] = "denied: " + ", ".join(decision.get("reasons", []))
    if ev.get("purpose"):
        res["purposeOfEvent"] = [_concept({"system": ACT_REASON, "code": ev["purpose"]})]
    entities = _entities(ev)
    if entities:
        res["entity"] = entities
    if index is not None:
        res["meta"] = {"tag": [{"system": f"{EVENT_SYSTEM}/log-index", "code": str(index)}]}
    return res
