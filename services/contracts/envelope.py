"""What binds a sealed ingest envelope to its routing metadata.

Ingest seals each message with HPKE and records opens it; the associated data
(AAD) is recomputed on both sides from the clear envelope fields and the Kafka
key, so both must build it byte for byte the same way. A message moved to
another submission, hospital or patient key no longer opens.
"""

from __future__ import annotations

# The Kafka key (and records' patient column) of directory data, which belongs to no patient.
DIRECTORY_KEY = "directory"


def envelope_aad(submission_id: str, hospital: str, key: str) -> bytes:
    """What the seal is bound to; records recomputes it from the envelope."""
    return f"{submission_id}|{hospital}|{key}".encode()
