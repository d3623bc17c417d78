"""Ingest settings."""

from pathlib import Path

from services.adapters.config import PlatformSettings
from services.ingest.labels import DEFAULT_TABLE


class IngestSettings(PlatformSettings):
    max_body_bytes: int = 64 * 1024 * 1024
    max_entries: int = 50_000
    labels_file: Path = DEFAULT_TABLE
    retry_after_s: int = 5
