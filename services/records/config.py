"""Records settings."""

from services.adapters.config import PlatformSettings


class RecordsSettings(PlatformSettings):
    consumer_group: str = "healthgov-records"
    records_database_url: str | None = None

    @property
    def store_url(self) -> str:
        return self.records_database_url or self.db_url("records")
