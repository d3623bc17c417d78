"""Records settings."""

from services.adapters.config import PlatformSettings


class RecordsSettings(PlatformSettings):
    consumer_group: str = "healthgov-records"
    records_database_url: str | None = None
    # How long evidence of care lasts (docs/architecture.md §10): after an Encounter or EpisodeOfCare
    # ends (or from when one under way was last seen), after a referral, after a patient's own grant.
    care_window_days: int = 30
    referral_days: int = 90
    patient_grant_days: int = 365
    # How long a completed Bulk Data export's files can be downloaded before they are deleted.
    export_retention_hours: float = 24.0

    @property
    def store_url(self) -> str:
        return self.records_database_url or self.db_url("records")
