"""Audit settings (``HEALTHGOV_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field, model_validator

from services.adapters.config import PlatformSettings
from services.audit.store import WRITER_ROLE


class AuditSettings(PlatformSettings):
    consumer_group: str = "healthgov-audit"
    # The writer role's URL (SELECT and INSERT only). Unset: migrate with the owner's
    # HEALTHGOV_DATABASE_URL at start, then connect as ``audit_db_role``.
    audit_database_url: str | None = None
    audit_db_role: str = WRITER_ROLE
    log_origin: str = "healthgov.example/audit/v1"
    checkpoint_interval_s: float = 5.0
    # Consume audit.events.v1 and sign checkpoints in this process (off: serve the API only).
    audit_consume: bool = True
    # Verifier keys (C2SP, alg 0x04) of the witnesses whose cosignatures the log publishes.
    witness_keys: list[str] = Field(default_factory=list)
    # The name of the platform's own demo witness; in dev and test its key is trusted too.
    witness_name: str = "healthgov.example/witness"

    @model_validator(mode="after")
    def _interval(self) -> AuditSettings:
        if self.checkpoint_interval_s <= 0:
            raise ValueError("HEALTHGOV_CHECKPOINT_INTERVAL_S must be positive")
        return self

    @property
    def owner_url(self) -> str:
        return self.db_url("audit")
