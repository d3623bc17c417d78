"""Key material: where it lives and how it is created.

On first start every key is generated into ``<state>/keys`` (git-ignored, mode
0600). ``KeyProvider`` is the seam for key-encryption keys: ``LocalKeyring`` is
the default, and a Vault or KMS provider implements the same four methods.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from services.adapters import crypto


def _write_secret(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
    os.replace(tmp, path)


def _load_or_create(path: Path, create: Any) -> dict[str, Any]:
    if not path.exists():
        _write_secret(path, create())
    return json.loads(path.read_text())


class KeyProvider(Protocol):
    """Source of key-encryption keys (KEKs)."""

    def active(self) -> tuple[str, bytes]: ...
    def get(self, kid: str) -> bytes: ...
    def rotate(self) -> str: ...
    def retire(self, kid: str) -> None: ...
    def kids(self) -> list[str]: ...


class LocalKeyring:
    """KEKs in a JSON keyring file outside git. Retired KEKs are destroyed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        _load_or_create(path, self._fresh)

    @staticmethod
    def _fresh() -> dict[str, Any]:
        kid = "kek-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        return {"active": kid, "keks": {kid: crypto.b64e(crypto.new_key())}}

    def _doc(self) -> dict[str, Any]:
        return json.loads(self.path.read_text())

    def active(self) -> tuple[str, bytes]:
        doc = self._doc()
        return doc["active"], crypto.b64d(doc["keks"][doc["active"]])

    def get(self, kid: str) -> bytes:
        keks = self._doc()["keks"]
        if kid not in keks:
            raise KeyError(f"KEK {kid} is not in the keyring (retired or unknown)")
        return crypto.b64d(keks[kid])

    def rotate(self) -> str:
        doc = self._doc()
        fresh = self._fresh()
        kid = fresh["active"]
        doc["keks"][kid] = fresh["keks"][kid]
        doc["active"] = kid
        _write_secret(self.path, doc)
        return kid

    def retire(self, kid: str) -> None:
        doc = self._doc()
        if kid == doc["active"]:
            raise ValueError("cannot retire the active KEK")
        doc["keks"].pop(kid, None)
        _write_secret(self.path, doc)

    def kids(self) -> list[str]:
        """Every KEK id the keyring still holds (the active one included)."""
        return sorted(self._doc()["keks"])


class PlatformKeys:
    """Every key a healthgov deployment owns, generated once per state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "keys"
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)

    def _pair(self, name: str, generate: Any) -> dict[str, str]:
        def create() -> dict[str, str]:
            sk, pk = generate()
            return {"private": crypto.b64e(sk), "public": crypto.b64e(pk)}

        return _load_or_create(self.dir / f"{name}.json", create)

    def _secret(self, name: str) -> bytes:
        doc = _load_or_create(self.dir / f"{name}.json", lambda: {"key": crypto.b64e(crypto.new_key())})
        return crypto.b64d(doc["key"])

    # HPKE: ingest holds only the public half, records the private one.
    def records_hpke_public(self) -> bytes:
        return crypto.b64d(self._pair("records-hpke", crypto.hpke_generate)["public"])

    def records_hpke_private(self) -> bytes:
        return crypto.b64d(self._pair("records-hpke", crypto.hpke_generate)["private"])

    def pseudonym_key(self) -> bytes:
        return self._secret("pseudonym")

    def blind_index_key(self) -> bytes:
        return self._secret("blind-index")

    def ingest_spool_key(self) -> bytes:
        """Ingest's own key for accepted bulk-import data waiting to be published."""
        return self._secret("ingest-spool")

    def records_token_key(self) -> bytes:
        """Records' key for the access tokens it issues to Bulk Data clients (SMART Backend Services)."""
        return self._secret("records-access-token")

    def portal_key(self) -> bytes:
        """The portal's key for its own account data (sealed patient references)."""
        return self._secret("portal")

    def analytics_keys(self) -> tuple[bytes, bytes]:
        """Records' keys for its analytic store: the store's patient pseudonyms and its Parquet master key."""
        return self._secret("analytics-pseudonym"), self._secret("analytics-parquet")
    def oversight_key(self) -> bytes:
        """Oversight's key for the words of complaints and their answers (sealed at rest)."""
        return self._secret("oversight")

    def keyring(self) -> LocalKeyring:
        return LocalKeyring(self.dir / "keyring.json")

    def audit_log_signer(self) -> tuple[bytes, bytes]:
        pair = self._pair("audit-log", crypto.ed25519_generate)
        return crypto.b64d(pair["private"]), crypto.b64d(pair["public"])

    def audit_db_password(self) -> str:
        """The audit writer role's PostgreSQL password, when the audit service creates that role."""
        return self._secret("audit-db-writer").hex()

    def witness_signer(self) -> tuple[bytes, bytes]:
        pair = self._pair("witness", crypto.ed25519_generate)
        return crypto.b64d(pair["private"]), crypto.b64d(pair["public"])

    def org_signer(self, org: str) -> tuple[bytes, bytes]:
        """A demo organisation's JWT signing key (dev and test only)."""
        pair = self._pair(f"org-{org}", crypto.ed25519_generate)
        return crypto.b64d(pair["private"]), crypto.b64d(pair["public"])

    def org_public_keys(self, orgs: list[str]) -> dict[str, bytes]:
        return {org: self.org_signer(org)[1] for org in orgs}

    def ensure_all(self, orgs: list[str]) -> None:
        """Create every key now, so that concurrent services never race to."""
        self.records_hpke_public()
        self.pseudonym_key()
        self.blind_index_key()
        self.oversight_key()
        self.keyring()
        self.audit_log_signer()
        self.witness_signer()
        self.org_public_keys(orgs)
