"""Audit events for tests: what the log's entries hold, as JSON documents and as canonical bytes."""

from __future__ import annotations

import uuid
from typing import Any

from services.tlog.canonical import canonical_json

ORIGIN = "test.healthgov.example/audit"


def event(kind: str = "disclosure", **over: Any) -> dict[str, Any]:
    """A logged AuditEvent as its JSON document (what the log's entries hold)."""
    ev: dict[str, Any] = {
        "schema": "healthgov.audit.event.v1", "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-22T10:00:00.000000Z", "kind": kind,
        "accessor": {"id": "dr-wang", "org": "gy-hosp-001", "org_type": "hospital", "role": "clinician"},
        "purpose": "TREAT", "patient": "p-" + "0" * 32,
        "resources": [{"type": "Condition", "id": "c-1", "version": "2"}],
        "decision": {"allow": kind != "denial", "reasons": ["clinician_care_relationship"],
                     "obligations": {"deidentify": "none", "redact_labels": [], "notify_patient": False,
                                     "notify_after": None, "review": False},
                     "policy_version": "2026.11.1+abcdef012345"},
        "legal": {}, "request_id": "req-1", "data_digest": "ab" * 32, "details": {},
    }
    ev.update(over)
    return ev


def entry(kind: str = "disclosure", **over: Any) -> bytes:
    return canonical_json(event(kind, **over))
