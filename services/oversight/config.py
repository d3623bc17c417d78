"""Oversight settings (``HEALTHGOV_*`` environment variables)."""

from __future__ import annotations

from services.adapters.config import PlatformSettings
from services.oversight.rules import Thresholds


class OversightSettings(PlatformSettings):
    """Where the metrics live, how long a break-glass review may wait, and the rules' thresholds."""

    oversight_database_url: str | None = None
    reports_group: str = "healthgov-oversight-quality"
    audit_group: str = "healthgov-oversight-audit"
    # Consume the two topics in this process (off: serve the API only, as a further instance would).
    oversight_consume: bool = True
    # Every break-glass access is reviewed within this many days, or the review is overdue.
    review_days: float = 7.0
    # The reporting cadence of a hospital the registry gives none (``reporting.cadence_hours``).
    default_cadence_hours: float = 24.0
    # The period the hospitals table covers by default, in days back from now.
    period_days: int = 30
    # Rules (services/oversight/rules.py).
    break_glass_min: int = 3
    break_glass_mads: float = 3.0
    baseline_factor: float = 5.0
    baseline_min_reads: int = 20
    no_care_patients: int = 5
    after_hours_reads: int = 10
    working_hours_start: int = 8
    working_hours_end: int = 20
    oversight_timezone: str = "Asia/Shanghai"
    repeat_reads: int = 5
    repeat_seconds: float = 10.0

    @property
    def store_url(self) -> str:
        return self.oversight_database_url or self.db_url("oversight")

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(
            break_glass_min=self.break_glass_min, break_glass_mads=self.break_glass_mads,
            baseline_factor=self.baseline_factor, baseline_min_reads=self.baseline_min_reads,
            no_care_patients=self.no_care_patients, after_hours_reads=self.after_hours_reads,
            working_hours=(self.working_hours_start, self.working_hours_end), timezone=self.oversight_timezone,
            repeat_reads=self.repeat_reads, repeat_seconds=self.repeat_seconds)
