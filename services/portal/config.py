"""Portal settings."""

from services.adapters.config import PlatformSettings


class PortalSettings(PlatformSettings):
    portal_database_url: str | None = None
    session_ttl_s: int = 30 * 60
    # Regulators sign in through their own identity provider in production; in dev and
    # test the portal stands in for it with the demo regulator's key.
    regulator_org: str = "gz-nhc"
    # Sign-in throttling: failures per account, and per client address, within a sliding window.
    signin_account_failures: int = 5
    signin_account_window_s: int = 15 * 60
    signin_address_failures: int = 30
    signin_address_window_s: int = 5 * 60

    @property
    def store_url(self) -> str:
        return self.portal_database_url or self.db_url("portal")
