"""Settings shared by every healthgov process (DESIGN §7).

All settings come from ``HEALTHGOV_*`` environment variables with working local
defaults; each service extends ``PlatformSettings`` with its own. Secrets are
never settings: they are generated on first start into the state directory.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class PlatformSettings(BaseSettings):
    """What every service needs to find the platform around it."""

    model_config = SettingsConfigDict(env_prefix="HEALTHGOV_", extra="ignore")

    env: str = "dev"
    state_dir: Path = REPO_ROOT / ".state"
    registry_file: Path = REPO_ROOT / "deploy" / "demo" / "registry.json"
    kafka_bootstrap: str = "127.0.0.1:9092"
    opa_url: str = "http://127.0.0.1:8181"
    database_url: str | None = None
    portal_org: str = "healthgov-portal"
    ingest_url: str = "http://127.0.0.1:8001"
    records_url: str = "http://127.0.0.1:8002"
    audit_url: str = "http://127.0.0.1:8003"
    portal_url: str = "http://127.0.0.1:8000"

    @model_validator(mode="after")
    def _known_env(self) -> PlatformSettings:
        if self.env not in ("dev", "test", "prod"):
            raise ValueError("HEALTHGOV_ENV must be dev, test or prod")
        return self

    @property
    def dev_mode(self) -> bool:
        """Dev and test run on generated demo keys; prod never does."""
        return self.env in ("dev", "test")

    def sqlite_url(self, name: str) -> str:
        """The embedded default store for one service, inside the state dir."""
        return f"sqlite:///{self.state_dir / f'{name}.db'}"

    def db_url(self, name: str) -> str:
        return self.database_url or self.sqlite_url(name)
