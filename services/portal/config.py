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
    # Erasure asks for the password again; the confirmation counts this long within the session (reauth.py).
    reauth_window_s: int = 5 * 60

    # Notices by e-mail (services/portal/notify.py). The channel: "smtp", or "none" (no e-mail at all); unset, dev
    # and test use the stack's local SMTP sink and production sends nothing until a relay is configured.
    notify_channel: str = ""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 0  # 0: the local sink's port (8025 shifted by the port offset)
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = ""
    mail_from: str = "healthgov <noreply@healthgov.example>"
    notify_interval_s: float = 5.0
    notify_max_attempts: int = 6
    notify_backoff_s: float = 30.0
    # The portal's address as patients reach it (the link in an e-mail); unset, the local portal URL.
    public_url: str = ""

    @property
    def channel(self) -> str:
        if self.notify_channel:
            if self.notify_channel not in ("smtp", "none"):
                raise ValueError("HEALTHGOV_NOTIFY_CHANNEL must be smtp or none")
            return self.notify_channel
        return "smtp" if self.dev_mode else "none"

    @property
    def relay_port(self) -> int:
        return self.smtp_port or self.port("mail")

    @property
    def store_url(self) -> str:
        return self.portal_database_url or self.db_url("portal")
