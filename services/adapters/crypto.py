"""The crypto envelope: the one module that touches the cipher library.

- ``seal``/``open_sealed``: HPKE (RFC 9180, X25519 / HKDF-SHA256 / AES-256-GCM)
  so that only the records service can read what ingest puts on Kafka.
- ``DataKey``: a per-patient AES-256-GCM data key. Every ciphertext is bound by
  AAD to (patient pseudonym, type, id, version), so a ciphertext moved to
  another row fails to decrypt.
- ``Keyring``: key-encryption keys (KEKs) that wrap data keys. Rotation adds a
  new KEK and rewraps; records are never re-encrypted.
- ``blind_index``/``pseudonym``: keyed HMAC-SHA256 digests that let us look
  things up by identifier without storing the identifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_HPKE_INFO = b"healthgov ingest->records v1"
_NONCE = 12


class DecryptionError(Exception):
    """A ciphertext failed authentication: wrong key, wrong AAD or tampered."""


def b64e(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def b64d(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# --- HPKE ---------------------------------------------------------------------


def hpke_generate() -> tuple[bytes, bytes]:
    """A new X25519 key pair as raw (private, public) bytes."""
    sk = X25519PrivateKey.generate()
    return sk.private_bytes_raw(), sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def seal(plaintext: bytes, recipient_public: bytes, aad: bytes = b"") -> bytes:
    """Seal ``plaintext`` to the recipient; ``aad`` is bound through HPKE ``info``."""
    pk = X25519PublicKey.from_public_bytes(recipient_public)
    return _SUITE.encrypt(plaintext, pk, info=_HPKE_INFO + b"|" + aad)


def open_sealed(sealed: bytes, recipient_private: bytes, aad: bytes = b"") -> bytes:
    """Open what ``seal`` made; raises ``DecryptionError`` if anything was altered."""
    sk = X25519PrivateKey.from_private_bytes(recipient_private)
    try:
        return _SUITE.decrypt(sealed, sk, info=_HPKE_INFO + b"|" + aad)
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError("sealed payload failed to open") from exc


# --- data keys and KEKs -----------------------------------------------------------


def new_key() -> bytes:
    """32 random bytes: an AES-256 key or an HMAC key."""
    return secrets.token_bytes(32)


@dataclass(frozen=True)
class DataKey:
    """A per-patient AES-256-GCM data key (plaintext only in memory)."""

    key: bytes

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self.key).encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        try:
            return AESGCM(self.key).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except (InvalidTag, ValueError) as exc:
            raise DecryptionError("record ciphertext failed to authenticate") from exc


def wrap_key(kek: bytes, key: bytes) -> bytes:
    """Wrap a data key with a KEK (RFC 3394 AES key wrap)."""
    return aes_key_wrap(kek, key)


def unwrap_key(kek: bytes, wrapped: bytes) -> bytes:
    try:
        return aes_key_unwrap(kek, wrapped)
    except InvalidUnwrap as exc:
        raise DecryptionError("data key failed to unwrap") from exc


def record_aad(pseudonym: str, rtype: str, rid_index: str, version: int) -> bytes:
    """The AAD that binds a record ciphertext to its row."""
    return f"healthgov.record.v1|{pseudonym}|{rtype}|{rid_index}|{version}".encode()


# --- keyed digests --------------------------------------------------------------


def keyed_digest(key: bytes, *parts: str) -> str:
    """HMAC-SHA256 over ``parts`` joined unambiguously, hex encoded."""
    msg = "\x1f".join(parts).encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def blind_index(key: bytes, *parts: str) -> str:
    """A blind index for identifier look-ups (docs/architecture.md §4)."""
    return keyed_digest(key, "bidx", *parts)


def pseudonym(key: bytes, patient_id: str) -> str:
    """The platform-wide patient pseudonym: stable, keyed, not reversible."""
    return "p-" + keyed_digest(key, "patient", patient_id)[:32]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ed25519_generate() -> tuple[bytes, bytes]:
    """A new Ed25519 signing key as raw (private, public) bytes."""
    sk = Ed25519PrivateKey.generate()
    return sk.private_bytes_raw(), sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
