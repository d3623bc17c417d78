"""C2SP signed notes, tlog checkpoints and Ed25519 checkpoint cosignatures.

Pure encoding, signing and verification; no I/O and no clock (cosignature
timestamps are passed in).  Formats, byte for byte:

* c2sp.org/signed-note (= golang.org/x/mod/sumdb/note): text ending in a
  newline, a blank line, then lines ``\u2014 <name> <base64(key id || sig)>``.
  Key id = SHA-256(name || "\\n" || alg || public key)[:4] as a big-endian
  uint32.  Verifier key ``<name>+<8 hex>+<base64(alg || public key)>``; signer
  key ``PRIVATE+KEY+<name>+<8 hex>+<base64(alg || Ed25519 seed)>``.
* c2sp.org/tlog-checkpoint: origin line, decimal tree size, base64 root hash,
  optional non-empty extension lines, each newline-terminated.
* c2sp.org/tlog-cosignature, Ed25519 ``cosignature/v1``: alg byte 0x04, signed
  message ``cosignature/v1\\ntime <t>\\n`` + checkpoint text, signature payload
  key id || uint64 big-endian t || Ed25519 signature.

Opening follows the Go ``note.Open`` rules: unknown keys are ignored, a bad
signature from a known key rejects the whole note, and at least one known
signature must verify.  Parsing is strict (canonical base64, 32-byte roots,
no leading zeros) because these notes are evidence.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALG_ED25519 = 0x01
"""Signature type of plain Ed25519 note signatures (checkpoints signed by the log)."""
ALG_COSIGNATURE_V1 = 0x04
"""Signature type of timestamped Ed25519 checkpoint cosignatures (witnesses)."""
SIG_LINE_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 100  # as upstream; the spec requires accepting at least 16
MAX_TIMESTAMP = (1 << 63) - 1
COSIGNATURE_HEADER = b"cosignature/v1\n"

_PRIVATE_PREFIX = "PRIVATE+KEY+"
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_SIZE = re.compile(r"0|[1-9][0-9]*")
_MAX_U64 = (1 << 64) - 1
_ALGS = (ALG_ED25519, ALG_COSIGNATURE_V1)


class NoteError(ValueError):
    """Base class of every note, key and checkpoint error."""


class MalformedNoteError(NoteError):
    """The text is not a syntactically valid signed note."""


class KeyFormatError(NoteError):
    """A signer or verifier key string is malformed or its key id is wrong."""


class AmbiguousKeyError(NoteError):
    """Several configured verifiers share the name and key id of a signature."""


class InvalidSignatureError(NoteError):
    """A signature from a known key does not verify: the note must be rejected."""

    def __init__(self, name: str, key_id: int) -> None:
        super().__init__(f"invalid signature for key {name}+{key_id:08x}")
        self.name, self.key_id = name, key_id


class UnverifiedNoteError(NoteError):
    """The note parsed, but no signature is from a known key; ``.note`` holds it."""

    def __init__(self, note: Note) -> None:
        super().__init__("note has no verifiable signatures")
        self.note = note


class CheckpointError(NoteError):
    """The note text is not a valid tlog checkpoint, or not the expected log's."""


def key_id(name: str, alg: int, public_key: bytes) -> int:
    """Return the key id: SHA-256(name || "\\n" || alg || public_key)[:4], big-endian."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _valid_name(name: str) -> bool:
    """Key names: non-empty, no '+', no Unicode space, no control character."""
    return bool(name) and "+" not in name and not any(c.isspace() or c < " " for c in name)


def _b64decode(text: str) -> bytes:
    """Strict standard base64: alphabet only, padded, canonical (re-encodes identically)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError("invalid base64") from None
    if base64.b64encode(raw).decode() != text:
        raise NoteError("non-canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _to_text(msg: str | bytes) -> str:
    """Decode and check a note: valid UTF-8, no control character but newline."""
    try:
        text = msg.decode() if isinstance(msg, bytes) else msg
        text.encode()  # rejects lone surrogates
    except UnicodeError:
        raise MalformedNoteError("note is not valid UTF-8") from None
    if any(c < " " and c != "\n" for c in text):
        raise MalformedNoteError("control character in note")
    return text


@dataclass(frozen=True)
class Verifier:
    """A public key able to check note signatures of type ``alg`` (0x01 or 0x04)."""

    name: str
    key_id: int
    alg: int
    public_key: bytes

    @property
    def vkey(self) -> str:
        """The verifier key string ``name+hex(id)+base64(alg || key)``."""
        return f"{self.name}+{self.key_id:08x}+{_b64(bytes([self.alg]) + self.public_key)}"

    def verify(self, text: bytes, sig: bytes) -> bool:
        """Check ``sig`` (the signature-line payload after the key id) over note ``text``."""
        if self.alg == ALG_COSIGNATURE_V1:  # sig = uint64 timestamp || Ed25519 signature
            try:
                text, sig = cosignature_message(text, int.from_bytes(sig[:8], "big")), sig[8:]
            except NoteError:
                return False
        if len(sig) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(sig, text)
        except (InvalidSignature, ValueError):
            return False
        return True


class Signer:
    """An Ed25519 private key with its note name and key id. ``repr`` never shows the key."""

    __slots__ = ("_key", "alg", "key_id", "name", "public_key")

    def __init__(self, name: str, alg: int, seed: bytes) -> None:
        if not _valid_name(name) or alg not in _ALGS or len(seed) != 32:
            raise KeyFormatError("invalid signer name, algorithm or seed")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.name, self.alg = name, alg
        self.public_key = self._key.public_key().public_bytes_raw()
        self.key_id = key_id(name, alg, self.public_key)

    def __repr__(self) -> str:
        return f"Signer({self.name}+{self.key_id:08x}, alg={self.alg})"

    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_id, self.alg, self.public_key)

    def sign(self, text: bytes, timestamp: int | None = None) -> bytes:
        """Return the signature-line payload (without key id) for note ``text``.

        Cosigners (alg 0x04) require ``timestamp`` (POSIX seconds) and a
        checkpoint ``text``; plain signers ignore ``timestamp``.
        """
        if self.alg == ALG_ED25519:
            return self._key.sign(text)
        if timestamp is None:
            raise NoteError("a cosignature needs a timestamp")
        message = cosignature_message(text, timestamp)  # checks the timestamp range first
        return timestamp.to_bytes(8, "big") + self._key.sign(message)


def generate_key(name: str, alg: int = ALG_ED25519, seed: bytes | None = None) -> tuple[str, str]:
    """Return a keypair ``(skey, vkey)`` as key strings; keep ``skey`` secret.

    A fresh random key unless a 32-byte Ed25519 ``seed`` is given.  Use
    ``alg=ALG_COSIGNATURE_V1`` for a witness/cosigner key.
    """
    seed = Ed25519PrivateKey.generate().private_bytes_raw() if seed is None else seed
    signer = Signer(name, alg, seed)
    skey = f"{_PRIVATE_PREFIX}{name}+{signer.key_id:08x}+{_b64(bytes([alg]) + seed)}"
    return skey, signer.verifier().vkey


def _split_key(key: str) -> tuple[str, int, int, bytes]:
    name, _, rest = key.partition("+")
    hex_id, _, key64 = rest.partition("+")
    if not _valid_name(name) or not _HEX8.fullmatch(hex_id):
        raise KeyFormatError("malformed key name or id")
    try:
        raw = _b64decode(key64)
    except NoteError:
        raise KeyFormatError("malformed key material") from None
    if len(raw) != 33 or raw[0] not in _ALGS:
        raise KeyFormatError("unsupported key algorithm or size")
    return name, int(hex_id, 16), raw[0], raw[1:]


def new_verifier(vkey: str) -> Verifier:
    """Parse a verifier key string (alg 0x01 or 0x04) and check its key id."""
    name, kid, alg, public_key = _split_key(vkey)
    if kid != key_id(name, alg, public_key):
        raise KeyFormatError("verifier key id does not match the key")
    return Verifier(name, kid, alg, public_key)


def _as_verifier(key: Verifier | str) -> Verifier:
    return new_verifier(key) if isinstance(key, str) else key


def new_signer(skey: str) -> Signer:
    """Parse a ``PRIVATE+KEY+...`` signer key string and check its key id."""
    if not skey.startswith(_PRIVATE_PREFIX):
        raise KeyFormatError("signer key must start with PRIVATE+KEY+")
    name, kid, alg, seed = _split_key(skey[len(_PRIVATE_PREFIX) :])
    signer = Signer(name, alg, seed)
    if kid != signer.key_id:
        raise KeyFormatError("signer key id does not match the key")
    return signer


@dataclass(frozen=True)
class Signature:
    """One signature line: key name, key id and the base64 payload (id included)."""

    name: str
    key_id: int
    base64: str

    @property
    def payload(self) -> bytes:
        """The signature bytes after the 4-byte key id."""
        return _b64decode(self.base64)[4:]

    @property
    def line(self) -> str:
        return f"{SIG_LINE_PREFIX}{self.name} {self.base64}\n"


@dataclass(frozen=True)
class Note:
    """A note text with its verified and unverified signatures."""

    text: str
    sigs: tuple[Signature, ...] = ()
    unverified_sigs: tuple[Signature, ...] = ()


def _parse_sig_line(line: str) -> Signature:
    if not line.startswith(SIG_LINE_PREFIX):
        raise MalformedNoteError("signature line must start with an em dash and a space")
    name, _, b64 = line[len(SIG_LINE_PREFIX) :].partition(" ")
    try:
        raw = _b64decode(b64)
    except NoteError:
        raise MalformedNoteError("malformed signature") from None
    if not _valid_name(name) or len(raw) < 5:
        raise MalformedNoteError("malformed signature line")
    return Signature(name, int.from_bytes(raw[:4], "big"), b64)


def parse_note(msg: str | bytes) -> Note:
    """Split a signed note into text and signatures without verifying anything.

    All signatures land in ``unverified_sigs`` (identical lines once).  Use it
    to re-sign a note; never trust its text.
    """
    data = _to_text(msg)
    split = data.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("no blank line before the signatures")
    text, block = data[: split + 1], data[split + 2 :]
    if not block.endswith("\n"):
        raise MalformedNoteError("signature block must be non-empty and end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError("too many signatures")
    sigs = tuple(_parse_sig_line(line) for line in dict.fromkeys(lines))
    return Note(text, (), sigs)


def open_note(msg: str | bytes, verifiers: Iterable[Verifier | str]) -> Note:
    """Parse ``msg`` and verify it against the known ``verifiers`` (objects or vkey strings).

    Signatures from unknown (name, key id) pairs go to ``unverified_sigs``;
    a failing signature from a known key raises ``InvalidSignatureError``;
    if no known signature verifies, ``UnverifiedNoteError``.  Repeated
    signatures by one known key are dropped after the first, as upstream.
    """
    parsed = parse_note(msg)
    known: dict[tuple[str, int], list[Verifier]] = {}
    for v in map(_as_verifier, verifiers):
        known.setdefault((v.name, v.key_id), []).append(v)
    text = parsed.text.encode()
    verified: list[Signature] = []
    unverified: list[Signature] = []
    seen: set[tuple[str, int]] = set()
    for sig in parsed.unverified_sigs:
        candidates = known.get((sig.name, sig.key_id))
        if candidates is None:
            unverified.append(sig)
            continue
        if len(candidates) > 1:
            raise AmbiguousKeyError(f"ambiguous key {sig.name}+{sig.key_id:08x}")
        if (sig.name, sig.key_id) in seen:
            continue
        seen.add((sig.name, sig.key_id))
        if not candidates[0].verify(text, sig.payload):
            raise InvalidSignatureError(sig.name, sig.key_id)
        verified.append(sig)
    note = Note(parsed.text, tuple(verified), tuple(unverified))
    if not verified:
        raise UnverifiedNoteError(note)
    return note


def sign_note(note: Note | str, *signers: Signer, timestamp: int | None = None) -> str:
    """Return the signed note: ``note``'s existing signatures, then one per signer.

    ``note`` is plain text (ending in a newline) or a ``Note``, e.g. from
    ``parse_note``/``open_note``; an existing signature by the same
    (name, key id) as a signer is replaced.  ``timestamp`` is passed to
    cosigners.  Adding a signature does not vouch for the others.
    """
    if isinstance(note, str):
        note = Note(note)
    text = _to_text(note.text)
    if not text.endswith("\n"):
        raise MalformedNoteError("note text must end in a newline")
    new_lines, have = [], set()
    for signer in signers:
        if not _valid_name(signer.name):
            raise NoteError("invalid signer name")
        payload = signer.sign(text.encode(), timestamp)
        have.add((signer.name, signer.key_id))
        sig = Signature(signer.name, signer.key_id, _b64(signer.key_id.to_bytes(4, "big") + payload))
        new_lines.append(sig.line)
    old_lines = []
    for sig in (*note.sigs, *note.unverified_sigs):
        if (sig.name, sig.key_id) in have:
            continue
        if _parse_sig_line(sig.line[:-1]) != sig:
            raise MalformedNoteError("existing signature does not match its key id")
        old_lines.append(sig.line)
    lines = old_lines + new_lines
    if not lines or len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"a signed note needs 1 to {MAX_SIGNATURES} signatures")
    return text + "\n" + "".join(lines)


def add_signatures(msg: str | bytes, *signers: Signer, timestamp: int | None = None) -> str:
    """Add (or replace) signatures on an already signed note, keeping the others."""
    return sign_note(parse_note(msg), *signers, timestamp=timestamp)


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint body: origin, tree size, 32-byte root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        lines = (self.origin, *self.extensions)
        if not all(lines) or any(c < " " for line in lines for c in line):
            raise CheckpointError("origin and extension lines must be non-empty single lines")
        if not 0 <= self.size <= _MAX_U64 or len(self.root_hash) != 32:
            raise CheckpointError("tree size must be a uint64 and the root hash 32 bytes")

    @property
    def text(self) -> str:
        """The note text (checkpoint body) to sign."""
        lines = (self.origin, str(self.size), _b64(self.root_hash), *self.extensions)
        return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body (note text), strictly; raises ``CheckpointError``."""
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint must end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not _SIZE.fullmatch(lines[1]):
        raise CheckpointError("need origin, tree size (no leading zeros) and root hash lines")
    try:
        root = _b64decode(lines[2])
    except NoteError:
        raise CheckpointError("root hash is not canonical base64") from None
    return Checkpoint(lines[0], int(lines[1]), root, tuple(lines[3:]))


def open_checkpoint(msg: str | bytes, log_verifier: Verifier | str, origin: str | None = None) -> Checkpoint:
    """Verify the log's signature on a checkpoint note and parse it.

    Only ``log_verifier`` counts (cosignatures are checked separately with
    ``verify_cosignature``).  The origin line must equal ``origin``, which
    defaults to the log key's name (the spec's recommended convention).
    """
    log_verifier = _as_verifier(log_verifier)
    note = open_note(msg, [log_verifier])
    checkpoint = parse_checkpoint(note.text)
    expected = log_verifier.name if origin is None else origin
    if checkpoint.origin != expected:
        raise CheckpointError(f"checkpoint origin {checkpoint.origin!r} != {expected!r}")
    return checkpoint


def cosignature_message(text: bytes, timestamp: int) -> bytes:
    """Return the cosignature/v1 signed message for checkpoint ``text`` at ``timestamp``.

    Raises ``NoteError`` unless ``text`` is a checkpoint and 0 <= timestamp < 2**63.
    """
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp {timestamp} out of range")
    parse_checkpoint(_to_text(text))
    return COSIGNATURE_HEADER + b"time %d\n" % timestamp + text


def cosignature_timestamp(sig: Signature) -> int:
    """Return the POSIX timestamp embedded in a cosignature/v1 signature line."""
    raw = _b64decode(sig.base64)
    if len(raw) != 4 + 8 + 64:
        raise NoteError("not an Ed25519 cosignature/v1 signature")
    return int.from_bytes(raw[4:12], "big")


def cosign(msg: str | bytes, cosigner: Signer, timestamp: int) -> str:
    """Add ``cosigner``'s cosignature at ``timestamp`` to a signed checkpoint note.

    The caller (a witness) must first have verified the log's signature and
    the consistency with the last checkpoint it cosigned for this origin.
    """
    if cosigner.alg != ALG_COSIGNATURE_V1:
        raise NoteError("cosigner key must have algorithm 0x04")
    return add_signatures(msg, cosigner, timestamp=timestamp)


def verify_cosignature(msg: str | bytes, verifier: Verifier | str) -> int:
    """Verify ``verifier``'s cosignature on a checkpoint note; return its timestamp.

    Raises ``UnverifiedNoteError`` if that cosigner did not sign and
    ``InvalidSignatureError`` if its signature is bad.
    """
    verifier = _as_verifier(verifier)
    if verifier.alg != ALG_COSIGNATURE_V1:
        raise NoteError("cosignature verifier key must have algorithm 0x04")
    note = open_note(msg, [verifier])
    return cosignature_timestamp(note.sigs[0])
