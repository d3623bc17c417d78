"""Audit settings."""

from services.adapters.config import PlatformSettings


class AuditSettings(PlatformSettings):
    consumer_group: str = "healthgov-audit"
    audit_database_url: str | None = None
    log_origin: str = "healthgov.example/audit/v1"
    checkpoint_interval_s: float = 5.0

    @property
    def store_url(self) -> str:
        return self.audit_database_url or self.db_url("audit")
