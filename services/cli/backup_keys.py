"""The platform's keys in a backup: sealed under the operator's passphrase, kept apart from the data.

A database dump holds only ciphertexts, wrapped data keys and pseudonyms; what
opens them is ``<state>/keys``. So the keys never travel with the dump: they are
sealed into one file of their own (scrypt stretches the passphrase, AES-256-GCM
seals every key file) which the operator stores elsewhere (another medium, a
safe). The backup's id is the AEAD's associated data, so a key file opens only
the backup it was written with, and a wrong passphrase or a changed byte fails
the whole file, never half of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from services.adapters import crypto

FORMAT = "healthgov.backup.keys.v1"
MIN_PASSPHRASE = 12
# scrypt cost: 2^17 x 8 x 128 bytes = 128 MiB and a fraction of a second, once per backup or restore.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1


class KeysUnreadable(Exception):
    """The key file does not open: wrong passphrase, another backup's file, or altered bytes."""


def _kek(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def check_passphrase(passphrase: str) -> None:
    """Refuse a passphrase too short to stand against an offline guess at the stolen key file."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise ValueError(f"the backup passphrase must have at least {MIN_PASSPHRASE} characters")


def read_key_files(keys_dir: Path) -> dict[str, str]:
    """Every key file of a state directory, by name (the ``*.json`` files ``PlatformKeys`` writes)."""
    files = {p.name: p.read_text() for p in sorted(keys_dir.glob("*.json"))}
    if not files:
        raise FileNotFoundError(f"no keys in {keys_dir}")
    return files


def seal(files: dict[str, str], passphrase: str, backup_id: str) -> bytes:
    """The sealed key file: JSON with the scrypt parameters, a nonce and the ciphertext."""
    check_passphrase(passphrase)
    salt, nonce = os.urandom(16), os.urandom(12)
    key = _kek(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    plaintext = json.dumps(files, sort_keys=True).encode()
    sealed = AESGCM(key).encrypt(nonce, plaintext, f"{FORMAT}\n{backup_id}".encode())
    doc = {
        "format": FORMAT, "backup_id": backup_id,
        "kdf": {"name": "scrypt", "salt": crypto.b64e(salt), "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
        "aead": "AES-256-GCM", "nonce": crypto.b64e(nonce), "ciphertext": crypto.b64e(sealed),
    }
    return json.dumps(doc, indent=2).encode() + b"\n"


def open_sealed(blob: bytes, passphrase: str, backup_id: str) -> dict[str, str]:
    """The key files sealed in ``blob`` for ``backup_id``; raise ``KeysUnreadable`` otherwise."""
    try:
        doc = json.loads(blob)
        kdf = doc["kdf"]
        if doc["format"] != FORMAT or kdf["name"] != "scrypt":
            raise KeysUnreadable(f"not a {FORMAT} key file")
        if doc["backup_id"] != backup_id:
            raise KeysUnreadable(f"the key file belongs to backup {doc['backup_id']}, not {backup_id}")
        key = _kek(passphrase, crypto.b64d(kdf["salt"]), int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
        plaintext = AESGCM(key).decrypt(crypto.b64d(doc["nonce"]), crypto.b64d(doc["ciphertext"]),
                                        f"{FORMAT}\n{backup_id}".encode())
    except InvalidTag as exc:
        raise KeysUnreadable("the key file does not open: wrong passphrase or altered file") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise KeysUnreadable(f"not a readable key file: {exc}") from exc
    files = json.loads(plaintext)
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise KeysUnreadable("the key file's content is not a set of key files")
    return files


def write_key_files(keys_dir: Path, files: dict[str, str]) -> None:
    """Put restored key files in place as ``PlatformKeys`` keeps them: directory 0700, files 0600."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    for name, content in files.items():
        if Path(name).name != name or not name.endswith(".json"):
            raise KeysUnreadable(f"refusing key file name {name!r}")
        fd = os.open(keys_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
