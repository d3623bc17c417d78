"""services.tlog.note: signed notes, checkpoints and cosignatures.

Known answers come from the specifications' and reference implementations'
own examples, quoted verbatim:

* golang.org/x/mod/sumdb/note (note.go doc comment and note_test.go): the
  PeterNeumann and EnochRoot keys, their signatures and the malformed-note table.
* c2sp.org/signed-note: the example.com/foo verifier key and example note.
* c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature: the
  example.com/behind-the-sofa checkpoint and its witness cosignature line
  (timestamp 1679315147, the "time" line of the spec's signed-message example).
* transparency-dev/formats note/note_cosigv1_test.go: a native 0x04 vkey
  (remora.n621.de), a 0x01 vkey (TEST) and a cosignature with timestamp 1727964367.

Ed25519 (RFC 8032) is deterministic, so signing the PeterNeumann text must
reproduce the published signature byte for byte.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from services.tlog import note

DASH = "\u2014"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_B64 = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
ENOCH_B64 = "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ="
PETER_SIG = f"{DASH} PeterNeumann {PETER_B64}\n"
ENOCH_SIG = f"{DASH} EnochRoot {ENOCH_B64}\n"

C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n"
    f"{DASH} example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
C2SP_CHECKPOINT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
C2SP_COSIG = "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
FORMATS_COSIG = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA=="
)

ROOT = hashlib.sha256(b"some root").digest()


def _log() -> tuple[note.Signer, note.Verifier]:
    skey, vkey = note.generate_key("log.healthgov.example/audit")
    return note.new_signer(skey), note.new_verifier(vkey)


def _witness() -> tuple[note.Signer, note.Verifier]:
    skey, vkey = note.generate_key("witness.example/w1", note.ALG_COSIGNATURE_V1)
    return note.new_signer(skey), note.new_verifier(vkey)


# --------------------------------------------------------------------------- key ids and key strings


@pytest.mark.parametrize(
    "vkey",
    [
        PETER_VKEY,
        ENOCH_VKEY,
        C2SP_VKEY,
        "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6",
        "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",  # alg 0x04
    ],
)
def test_key_id_known_answers(vkey: str) -> None:
    name, hex_id, key64 = vkey.split("+", 2)
    material = base64.b64decode(key64)
    assert note.key_id(name, material[0], material[1:]) == int(hex_id, 16)
    parsed = note.new_verifier(vkey)
    want = (name, int(hex_id, 16), material[0], material[1:])
    assert (parsed.name, parsed.key_id, parsed.alg, parsed.public_key) == want
    assert parsed.vkey == vkey


def test_key_id_is_sha256_of_name_newline_alg_key() -> None:
    pub = bytes(range(32))
    digest = hashlib.sha256(b"n\n\x01" + pub).digest()
    assert note.key_id("n", 0x01, pub) == int.from_bytes(digest[:4], "big")
    assert note.key_id("n", 0x04, pub) != note.key_id("n", 0x01, pub)


def test_signer_key_known_answer() -> None:
    signer = note.new_signer(PETER_SKEY)
    assert (signer.name, signer.key_id, signer.alg) == ("PeterNeumann", 0xC74F20A3, note.ALG_ED25519)
    assert signer.verifier() == note.new_verifier(PETER_VKEY)
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]  # the base64 itself contains "+"
    assert note.generate_key("PeterNeumann", seed=seed) == (PETER_SKEY, PETER_VKEY)
    assert "AYEKFALV" not in repr(signer) and seed.hex() not in repr(signer)


@pytest.mark.parametrize(("key", "parse"), [(PETER_VKEY, note.new_verifier), (PETER_SKEY, note.new_signer)])
def test_mangled_keys_are_rejected(key: str, parse: object) -> None:
    """As note_test.go: every proper substring and every single-character bump fails."""
    for i in range(len(key) + 1):
        for j in range(i + 1, len(key) + 1):
            if (i, j) != (0, len(key)):
                with pytest.raises(note.KeyFormatError):
                    parse(key[i:j])  # type: ignore[operator]
    for i in range(len(key)):
        with pytest.raises(note.KeyFormatError):
            parse(key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :])  # type: ignore[operator]


def test_bad_keys_from_upstream_tests() -> None:
    for vkey in (
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",  # wrong length
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # unknown algorithm
        "bananas.sigstore.dev+12344556",
    ):
        with pytest.raises(note.KeyFormatError):
            note.new_verifier(vkey)


def test_generated_keys_round_trip() -> None:
    for alg in (note.ALG_ED25519, note.ALG_COSIGNATURE_V1):
        skey, vkey = note.generate_key("EnochRoot", alg)
        assert skey.startswith("PRIVATE+KEY+EnochRoot+")
        assert note.new_signer(skey).verifier() == note.new_verifier(vkey)
    for bad_name in ("", "a+b", "a b", "a\u00a0b", "a\nb"):
        with pytest.raises(note.KeyFormatError):
            note.generate_key(bad_name)


# --------------------------------------------------------------------------- signing and opening


def test_sign_known_answer_and_replacement() -> None:
    signer = note.new_signer(PETER_SKEY)
    assert note.sign_note(TEXT, signer) == TEXT + "\n" + PETER_SIG
    stale = note.Note(TEXT, (note.Signature("PeterNeumann", 0xC74F20A3, "x08go/ZJ"),))  # would be malformed
    assert note.sign_note(stale, signer) == TEXT + "\n" + PETER_SIG  # replaced, as upstream


def test_open_known_answers() -> None:
    peter = note.new_verifier(PETER_VKEY)
    msg = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    n = note.open_note(msg, [peter])
    assert n.text == TEXT
    assert [s.name for s in n.sigs] == ["PeterNeumann"] and [s.name for s in n.unverified_sigs] == ["EnochRoot"]
    n = note.open_note(msg.encode(), [peter, ENOCH_VKEY])  # Verifier objects or vkey strings
    assert [(s.name, s.key_id) for s in n.sigs] == [("PeterNeumann", 0xC74F20A3), ("EnochRoot", 0xAF0CFE78)]
    assert note.open_note(C2SP_NOTE, [note.new_verifier(C2SP_VKEY)]).text == "This is an example message.\n"


def test_open_without_known_signature_is_unverified() -> None:
    with pytest.raises(note.UnverifiedNoteError) as err:
        note.open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])
    assert err.value.note.text == TEXT and len(err.value.note.unverified_sigs) == 2


def test_open_bad_signature_from_known_key_is_an_error() -> None:
    bad = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(note.InvalidSignatureError, match="PeterNeumann\\+c74f20a3"):
        note.open_note(TEXT + "\n" + bad, [note.new_verifier(PETER_VKEY)])
    enoch_bad = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]  # unknown key: ignored
    msg = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_bad
    n = note.open_note(msg, [note.new_verifier(PETER_VKEY)])
    assert len(n.sigs) == 1 and len(n.unverified_sigs) == 2


def test_open_ambiguous_verifiers() -> None:
    peter, enoch = note.new_verifier(PETER_VKEY), note.new_verifier(ENOCH_VKEY)
    with pytest.raises(note.AmbiguousKeyError):
        note.open_note(TEXT + "\n" + ENOCH_SIG, [enoch, peter, enoch])
    note.open_note(TEXT + "\n" + PETER_SIG, [enoch, peter, enoch])  # unused duplicate is fine


@pytest.mark.parametrize(
    "msg",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        b"\xff" + (TEXT + "\n" + PETER_SIG).encode(),
        TEXT + "\n" + f"{DASH} Bad Name {PETER_B64}",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG * 101,
        TEXT + "\n" + PETER_SIG.replace("AM=", "AN="),  # non-canonical base64
    ],
)
def test_malformed_notes(msg: str | bytes) -> None:
    with pytest.raises(note.MalformedNoteError):
        note.open_note(msg, [note.new_verifier(PETER_VKEY)])


def test_round_trip_tamper_and_wrong_key() -> None:
    signer, verifier = _log()
    signed = note.sign_note("hello\nworld\n", signer)
    assert note.open_note(signed, [verifier]).text == "hello\nworld\n"
    with pytest.raises(note.InvalidSignatureError):
        note.open_note(signed.replace("world", "w0rld"), [verifier])
    other = note.new_verifier(note.generate_key(verifier.name)[1])  # same name, other key: other id
    with pytest.raises(note.UnverifiedNoteError):
        note.open_note(signed, [other])
    forged = note.Verifier(verifier.name, verifier.key_id, verifier.alg, other.public_key)  # same id, wrong key
    with pytest.raises(note.InvalidSignatureError):
        note.open_note(signed, [forged])


def test_adding_signatures_to_a_signed_note() -> None:
    log, log_v = _log()
    skey, vkey = note.generate_key("second.example/key")
    second, second_v = note.new_signer(skey), note.new_verifier(vkey)
    once = note.sign_note("text\n", log)
    twice = note.add_signatures(once, second)
    assert twice.startswith(once)
    n = note.open_note(twice, [log_v, second_v])
    assert [s.name for s in n.sigs] == [log.name, second.name]
    assert note.add_signatures(twice, second) == twice  # re-signing replaces, no duplicate


def test_sign_preconditions() -> None:
    signer, _ = _log()
    for bad in ("no newline", "control\x07char\n"):
        with pytest.raises(note.MalformedNoteError):
            note.sign_note(bad, signer)
    with pytest.raises(note.MalformedNoteError):
        note.sign_note("text\n")  # no signature at all


# --------------------------------------------------------------------------- checkpoints


def test_parse_spec_checkpoint() -> None:
    cp = note.parse_checkpoint(C2SP_CHECKPOINT)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert len(cp.root_hash) == 32 and cp.text == C2SP_CHECKPOINT


@given(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF), min_size=1, max_size=40),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=20), max_size=3),
)
def test_checkpoint_round_trip(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    cp = note.Checkpoint(origin, size, root, tuple(extensions))
    assert note.parse_checkpoint(cp.text) == cp
    assert cp.text.split("\n")[1] == str(size)


@pytest.mark.parametrize(
    "text",
    [
        "origin\n5\n" + base64.b64encode(ROOT).decode(),  # no final newline
        "origin\n5\n",
        "origin\n05\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n-5\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n+5\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n18446744073709551616\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n5\n" + base64.b64encode(ROOT[:31]).decode() + "\n",
        "origin\n5\n" + base64.b64encode(ROOT).decode().rstrip("=") + "\n",
        "\n5\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n5\n" + base64.b64encode(ROOT).decode() + "\n\n",  # empty extension line
    ],
)
def test_bad_checkpoints(text: str) -> None:
    with pytest.raises(note.CheckpointError):
        note.parse_checkpoint(text)


def test_open_checkpoint() -> None:
    signer, verifier = _log()
    cp = note.Checkpoint(signer.name, 42, ROOT)
    signed = note.sign_note(cp.text, signer)
    assert note.open_checkpoint(signed, verifier) == cp
    with pytest.raises(note.CheckpointError, match="origin"):
        note.open_checkpoint(signed, verifier, origin="another.log/origin")
    witness, witness_v = _witness()
    only_witness = note.cosign(note.sign_note(cp.text, signer), witness, 1_700_000_000)
    assert note.verify_cosignature(only_witness, witness_v) == 1_700_000_000
    with pytest.raises(note.UnverifiedNoteError):  # a cosignature is not the log's signature
        note.open_checkpoint(note.sign_note(cp.text, witness, timestamp=1), verifier)


# --------------------------------------------------------------------------- cosignatures


def test_cosignature_timestamp_known_answers() -> None:
    assert note.cosignature_timestamp(note.Signature("witness.example.com/w1", 0x8D66CF3F, C2SP_COSIG)) == 1679315147
    assert note.cosignature_timestamp(note.Signature("x", 0x646846B9, FORMATS_COSIG)) == 1727964367
    line = f"{C2SP_CHECKPOINT}\n{DASH} witness.example.com/w1 {C2SP_COSIG}\n"
    (sig,) = note.parse_note(line).unverified_sigs
    assert sig.key_id == 0x8D66CF3F and len(sig.payload) == 8 + 64


def test_cosign_and_verify() -> None:
    log, log_v = _log()
    witness, witness_v = _witness()
    cp = note.Checkpoint(log.name, 7, ROOT, ("ext line",))
    signed = note.sign_note(cp.text, log)
    cosigned = note.cosign(signed, witness, 1679315147)
    assert cosigned.startswith(signed)
    assert note.verify_cosignature(cosigned, witness_v) == 1679315147
    assert note.verify_cosignature(cosigned, witness_v.vkey) == 1679315147
    assert note.open_checkpoint(cosigned, log_v) == cp  # the log key ignores the cosignature

    # The payload is key id || uint64 big-endian time || Ed25519 over the spec's message.
    (line,) = [ln for ln in cosigned.splitlines() if ln.startswith(f"{DASH} {witness.name} ")]
    raw = base64.b64decode(line.rsplit(" ", 1)[1])
    assert raw[:4] == witness.key_id.to_bytes(4, "big") and raw[4:12] == (1679315147).to_bytes(8, "big")
    message = b"cosignature/v1\ntime 1679315147\n" + cp.text.encode()
    Ed25519PublicKey.from_public_bytes(witness_v.public_key).verify(raw[12:], message)

    # Changing the timestamp breaks the signature; a 0x01 key for the same seed is another key.
    forged = raw[:4] + (1679315148).to_bytes(8, "big") + raw[12:]
    with pytest.raises(note.InvalidSignatureError):
        note.verify_cosignature(cosigned.replace(line.rsplit(" ", 1)[1], base64.b64encode(forged).decode()), witness_v)
    plain = note.Verifier(witness.name, note.key_id(witness.name, 1, witness.public_key), 1, witness.public_key)
    with pytest.raises(note.UnverifiedNoteError):
        note.open_note(cosigned, [plain])


def test_cosignature_preconditions() -> None:
    log, _ = _log()
    witness, witness_v = _witness()
    with pytest.raises(note.NoteError):
        note.cosign(note.sign_note("not a checkpoint\n", log), witness, 1)
    signed = note.sign_note(note.Checkpoint(log.name, 1, ROOT).text, log)
    for bad in (-1, 2**63):
        with pytest.raises(note.NoteError):
            note.cosign(signed, witness, bad)
    with pytest.raises(note.NoteError):
        note.cosign(signed, log, 1)  # a 0x01 key is not a cosigner
    with pytest.raises(note.UnverifiedNoteError):
        note.verify_cosignature(signed, witness_v)
