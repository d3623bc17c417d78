"""Fixtures every integration test package shares."""

from __future__ import annotations

import pytest

from services.adapters.config import PlatformSettings
from tests.integration.databases import owner_url_of


@pytest.fixture(scope="session")
def owner_url(settings: PlatformSettings) -> str:
    """The owner's URL of the test stack's PostgreSQL."""
    return owner_url_of(settings)
