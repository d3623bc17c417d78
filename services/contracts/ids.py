"""FHIR logical ids: ``[A-Za-z0-9\\-\\.]{1,64}`` (FHIR R4 ``id`` datatype).

An id is part of every URL, storage key and audit entry that names the
resource; one that breaks the rule is refused where it comes in (an ingest
entry's issue, a 404 for a path) instead of travelling further.
"""

from __future__ import annotations

import re

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
RULE = "an id is 1 to 64 characters of A-Z, a-z, 0-9, '-' and '.'"


def is_fhir_id(value: object) -> bool:
    return isinstance(value, str) and FHIR_ID.fullmatch(value) is not None
