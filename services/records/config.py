"""Records settings."""

from pathlib import Path

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
    # Population analytics (docs/architecture.md §16): counts at or below the threshold are suppressed,
    # the rest rounded; the store is brought up to date before each query and every refresh interval.
    analytics_threshold: int = 7
    analytics_rounding: int = 5
    analytics_refresh_seconds: float = 30.0
    analytics_dir: Path | None = None
    # Differential privacy (analytics/privacy.py) for every research project whose agreement names no terms of
    # its own: each project may spend this much epsilon, each answer this much. 0: off (the default).
    analytics_dp_epsilon_budget: float = 0.0
    analytics_dp_epsilon_per_query: float = 0.1
    # The notifiable diseases' value sets and the district populations of rates per 100,000
    # (defaults: notifiable.json and populations.json in services/records/analytics/; the populations are illustrative).
    notifiable_diseases_file: Path | None = None
    district_populations_file: Path | None = None

    @property
    def analytics_root(self) -> Path:
        return self.analytics_dir or self.state_dir / "analytics"

    @property
    def store_url(self) -> str:
        return self.records_database_url or self.db_url("records")
