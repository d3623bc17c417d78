"""Ingest settings (``HEALTHGOV_*``): limits, the validation pool and the import jobs."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from services.adapters.config import PlatformSettings
from services.ingest.labels import DEFAULT_TABLE
from services.ingest.report import DEFAULT_PRIORITY_FIELDS


class IngestSettings(PlatformSettings):
    """What a hospital integrator can rely on, and what an operator can tune."""

    # Limits: 413 beyond them, 429 with Retry-After beyond the rate.
    max_body_bytes: int = 128 * 1024 * 1024
    max_bundle_entries: int = 5_000
    max_ndjson_lines: int = 500_000
    rate_limit_per_s: float = 50.0  # requests per second per hospital (token bucket)
    rate_limit_burst: int = 100
    retry_after_s: int = 5
    # Sensitivity labels: the code→label table (docs/architecture.md §4).
    labels_file: Path = DEFAULT_TABLE
    # Validation: worker processes for bulk work.
    validation_workers: int = max(1, os.cpu_count() or 1)
    pool_threshold: int = 200  # resources in one request before the pool is used
    chunk_lines: int = 1_000  # NDJSON lines per validation chunk and per spooled job chunk
    message_resources: int = 250  # resources per sealed Kafka message (same patient)
    # Identifier systems strong enough for a hospital to name a patient it did not register (claims.py):
    # the resident identity card number (GB 11643) and, in the Synthea demo data, the US SSN.
    strong_identifier_systems: tuple[str, ...] = ("urn:oid:2.16.156.10011.1.5", "http://hl7.org/fhir/sid/us-ssn")
    # Clinical code systems recognised beside the international ones (services/fhir/validation.py): a clinical
    # code in none of them is accepted with a warning. The deployment's national systems go here.
    recognised_code_systems: tuple[str, ...] = ()
    # Async $import jobs.
    job_lease_s: int = 60
    job_poll_s: float = 0.5
    job_max_errors: int = 1_000
    # HL7 v2: the time zone of timestamps that carry none (the hospitals' local time).
    hl7_default_tz: str = "+08:00"
    # MLLP listener for HL7 v2 over mutual TLS; off unless the three PEM files are set.
    mllp_host: str = "127.0.0.1"
    mllp_port: int = 2575
    mllp_cert: Path | None = None
    mllp_key: Path | None = None
    mllp_client_ca: Path | None = None
    ingest_database_url: str | None = None
    # The fields whose presence the quality report counts, per resource type (JSON: {"Patient": ["gender"]}).
    priority_fields: dict[str, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_PRIORITY_FIELDS))

    @property
    def store_url(self) -> str:
        return self.ingest_database_url or self.db_url("ingest")
