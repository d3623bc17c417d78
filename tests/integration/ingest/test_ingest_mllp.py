"""HL7 v2 over MLLP with mutual TLS, in-process, on the real OPA, PostgreSQL and Kafka."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from services.ingest.mllp import END, START, frames
from tests.unit.ingest.hl7_messages import adt


def _cert(path: Path, name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
          ca: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer[0].subject if issuer else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
               .not_valid_after(now + dt.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                                     x509.DNSName(name)]), critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ca = _cert(d / "ca", "healthgov test CA", None, ca=True)
    _cert(d / "server", "localhost", ca)
    _cert(d / "gy-hosp-001", "gy-hosp-001", ca)
    _cert(d / "gy-cdc", "gy-cdc", ca)
    _cert(d / "stranger", "gy-hosp-001", _cert(d / "other-ca", "someone else's CA", None, ca=True))
    return d


@pytest.fixture(scope="module")
def listener(stack, pki: Path) -> Iterator[int]:  # type: ignore[no-untyped-def]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    settings = IngestSettings(validation_workers=0, mllp_port=port, mllp_cert=pki / "server.crt",
                              mllp_key=pki / "server.key", mllp_client_ca=pki / "ca.crt")
    with TestClient(create_app(settings)):
        yield port


def _exchange(port: int, pki: Path, client: str, message: str) -> str:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / f"{client}.crt"), str(pki / f"{client}.key"))
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(START + message.encode() + END)
        buffer = bytearray()
        while not (got := frames(buffer)):
            chunk = tls.recv(65536)
            if not chunk:
                raise ConnectionError("closed without an ACK")
            buffer.extend(chunk)
        return got[0].decode()


def test_a_hospital_certificate_gets_an_aa(listener: int, pki: Path) -> None:
    ack = _exchange(listener, pki, "gy-hosp-001", adt(control="MLLP0001", mrn="MLLP-MRN-1"))
    assert "\rMSA|AA|MLLP0001|" in ack


def test_a_non_hospital_certificate_is_refused_by_policy(listener: int, pki: Path) -> None:
    ack = _exchange(listener, pki, "gy-cdc", adt(control="MLLP0002"))
    assert "\rMSA|AR|MLLP0002|" in ack and "write_requires_hospital" in ack


def test_a_certificate_from_another_ca_cannot_connect(listener: int, pki: Path) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _exchange(listener, pki, "stranger", adt(control="MLLP0003"))


def test_frames_are_split_and_partial_frames_kept() -> None:
    buffer = bytearray(b"noise" + START + b"one" + END + START + b"tw")
    assert frames(buffer) == [b"one"] and bytes(buffer) == START + b"tw"
    buffer.extend(b"o" + END)
    assert frames(buffer) == [b"two"] and not buffer
