"""Which patient a FHIR resource belongs to (its patient compartment), or none.

Ingest keys and seals resources by patient, records files and authorises them
by patient, and both must draw the line between patient data and directory
data (organisations, practitioners) in the same place, so the rule lives here.
"""

from __future__ import annotations

from typing import Any

# Resource types that describe the care system, not a patient: stored once, readable by every clinician.
DIRECTORY_TYPES = frozenset({"Organization", "Location", "Practitioner", "PractitionerRole"})
# Elements that point at the patient a resource is about, in order of preference.
PATIENT_ELEMENTS = ("subject", "patient", "beneficiary")


def reference_of(value: Any) -> str | None:
    return value.get("reference") if isinstance(value, dict) else None


def patient_id_of(resource: dict[str, Any], full_urls: dict[str, str] | None = None) -> str | None:
    """The logical id of the patient a resource belongs to, or None for directory data."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id")
    for element in PATIENT_ELEMENTS:
        ref = reference_of(resource.get(element))
        if not ref:
            continue
        ref = (full_urls or {}).get(ref, ref)
        if ref.startswith("Patient/"):
            return ref.split("/", 1)[1]
        if ref.startswith("urn:uuid:"):
            return ref[len("urn:uuid:"):]
    return None
