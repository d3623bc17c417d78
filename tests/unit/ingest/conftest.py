"""Fixtures for ingest's pure-logic tests: fixture files, a sealing context with throwaway keys."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.adapters import crypto
from services.adapters.config import REPO_ROOT
from services.ingest.labels import DEFAULT_TABLE
from services.ingest.prepare import Context

FIXTURE_SETS = [REPO_ROOT / "deploy" / "demo" / "fixtures" / name
                for name in ("synthea-10-patients", "synthea-100-patients")]


def fixture_lines(directory: Path) -> dict[str, list[bytes]]:
    return {f.name: [ln for ln in gzip.decompress(f.read_bytes()).splitlines() if ln.strip()]
            for f in sorted(directory.glob("*.ndjson.gz"))}


@pytest.fixture(scope="session")
def all_fixture_lines() -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for d in FIXTURE_SETS:
        out.update({f"{d.name}/{k}": v for k, v in fixture_lines(d).items()})
    return out


@pytest.fixture(scope="session")
def ten_resources() -> list[dict[str, Any]]:
    return [orjson.loads(ln) for lines in fixture_lines(FIXTURE_SETS[0]).values() for ln in lines]


@pytest.fixture(scope="session")
def hpke_pair() -> tuple[bytes, bytes]:
    return crypto.hpke_generate()


@pytest.fixture(scope="session")
def ctx(hpke_pair: tuple[bytes, bytes]) -> Context:
    return Context(records_public_key=hpke_pair[1], pseudonym_key=b"p" * 32, labels_file=str(DEFAULT_TABLE),
                   message_resources=50)
