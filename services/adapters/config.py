"""Settings shared by every healthgov process (docs/architecture.md §8).

All settings come from ``HEALTHGOV_*`` environment variables with working local
defaults; each service extends ``PlatformSettings`` with its own. Secrets are
never settings: they are generated on first start into the state directory.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
PORTS = {"portal": 8000, "ingest": 8001, "records": 8002, "audit": 8003, "oversight": 8004, "mail": 8025, "opa": 8181,
         "kafka": 9092, "kafka-controller": 9093}


class PlatformSettings(BaseSettings):
    """What every service needs to find the platform around it."""

    model_config = SettingsConfigDict(env_prefix="HEALTHGOV_", extra="ignore")

    env: str = "dev"
    state_dir: Path = REPO_ROOT / ".state"
    registry_file: Path = REPO_ROOT / "deploy" / "demo" / "registry.json"
    # Shifts every local port (Kafka, OPA, services) so two stacks can share a machine.
    port_offset: int = 0
    kafka_bootstrap: str = ""
    opa_url: str = ""
    database_url: str | None = None
    portal_org: str = "healthgov-portal"
    ingest_url: str = ""
    records_url: str = ""
    audit_url: str = ""
    portal_url: str = ""
    oversight_url: str = ""

    @model_validator(mode="after")
    def _defaults(self) -> PlatformSettings:
        if self.env not in ("dev", "test", "prod"):
            raise ValueError("HEALTHGOV_ENV must be dev, test or prod")
        local = "http://127.0.0.1:{}"
        self.kafka_bootstrap = self.kafka_bootstrap or f"127.0.0.1:{self.port('kafka')}"
        self.opa_url = self.opa_url or local.format(self.port("opa"))
        for name in ("portal", "ingest", "records", "audit", "oversight"):
            if not getattr(self, f"{name}_url"):
                setattr(self, f"{name}_url", local.format(self.port(name)))
        return self

    def port(self, component: str) -> int:
        """The local port of a component (docs/architecture.md §8), shifted by ``port_offset``."""
        return PORTS[component] + self.port_offset

    @property
    def dev_mode(self) -> bool:
        """Dev and test run on generated demo keys; prod never does."""
        return self.env in ("dev", "test")

    def sqlite_url(self, name: str) -> str:
        """The embedded default store for one service, inside the state dir."""
        return f"sqlite:///{self.state_dir / f'{name}.db'}"

    def db_url(self, name: str) -> str:
        return self.database_url or self.sqlite_url(name)
