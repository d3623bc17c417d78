"""Portal settings."""

from services.adapters.config import PlatformSettings


class PortalSettings(PlatformSettings):
    portal_database_url: str | None = None
    session_ttl_s: int = 30 * 60
    # Regulators sign in through their own identity provider in production; in dev and
    # test the portal stands in for it with the demo regulator's key.
    regulator_org: str = "gz-nhc"

    @property
    def store_url(self) -> str:
        return self.portal_database_url or self.db_url("portal")
