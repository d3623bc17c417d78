"""Portal settings."""

from services.adapters.config import PlatformSettings


class PortalSettings(PlatformSettings):
    pass
